"""The action service's store: every statement about actions, their events, agents and
budgets, as named statements behind functions named for what they do.

One module per aggregate: :mod:`.actions` (the audit rows as written),
:mod:`.history` (the audit rows as read back), :mod:`.events` (the hash chains),
:mod:`.agents`, :mod:`.budgets`, :mod:`.targets` (looking targets up) and
:mod:`.inventory` (what the platform's inventory writes). Callers own connections and
transactions: every function runs on the connection (or pool) it is given. Nothing
outside this package and ``migrations/`` names these tables (docs/architecture.md §6).
"""

from services.actions.store import actions, agents, budgets, events, history, inventory, targets

__all__ = ["actions", "agents", "budgets", "events", "history", "inventory", "targets"]
