"""Outbox delivery: waking watchers when events commit (the action_events table is the truth)."""
