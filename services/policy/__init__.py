"""The policy service: a Casbin decision point (Check, BatchCheck, GetPolicyInfo)."""
