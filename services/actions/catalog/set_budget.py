"""``set_budget``: set or clear the target's own monthly budget (docs/architecture.md §2)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleetward.actions.v1 import actions_pb2

from services.actions import store
from services.actions.catalog._base import ActionKind, Change, Target
from services.actions.db import Conn
from services.actions.model import Scope, TargetKind
from services.common.names import agent_path
from services.common.status import FieldViolation

MAX_CENTS = 10**12


def budget_key(scope: str, target_id: str) -> str:
    """The ``action_targets.target_key`` of a budget."""
    return f"{scope}:{target_id}"


class SetBudget(ActionKind[actions_pb2.SetBudgetParams]):
    """Set or clear a monthly budget of an agent, a department or the fleet."""

    name = "set_budget"
    description = (
        "Set (monthly_limit_cents, 0..10^12) or clear the target's own monthly budget; "
        "an agent's effective budget is its own, else its department's, else the fleet's"
    )
    params_message = actions_pb2.SetBudgetParams
    scopes = (Scope.AGENT, Scope.DEPARTMENT, Scope.FLEET)
    can_rollback = True
    changes_agents = False  # only the target's own budget
    undone_by = "set_budget"

    def validate(self, params: actions_pb2.SetBudgetParams) -> list[FieldViolation]:
        """Exactly one of monthly_limit_cents and clear; the limit in range."""
        has_limit = params.HasField("monthly_limit_cents")
        if has_limit == params.clear:
            return [
                FieldViolation("set_budget", "set exactly one of monthly_limit_cents and clear")
            ]
        if has_limit and not 0 <= params.monthly_limit_cents <= MAX_CENTS:
            return [FieldViolation("set_budget.monthly_limit_cents", "must be 0..10^12")]
        return []

    def params_json(self, params: actions_pb2.SetBudgetParams) -> dict[str, Any]:
        """The field that was set."""
        if params.clear:
            return {"clear": True}
        return {"monthly_limit_cents": params.monthly_limit_cents}

    async def plan(
        self,
        conn: Conn,
        target: Target,
        params: actions_pb2.SetBudgetParams,
        now: datetime,
        *,
        lock: bool,
    ) -> list[Change]:
        """The target's budget, from its current limit (or none) to the new one."""
        resource = target.resource
        if target.scope == Scope.AGENT:
            # The path names the agent's department as of the lock: held (FOR SHARE) so
            # the inventory cannot move the agent until the budget is written.
            department = await store.agents.department_of(
                conn, target.workspace_id, target.target_id, hold=lock
            )
            resource = "" if department is None else agent_path(department, target.target_id)
        current = await store.budgets.limit_of(
            conn, target.workspace_id, target.scope, target.target_id, lock=lock
        )
        new = None if params.clear else params.monthly_limit_cents
        key = budget_key(target.scope, target.target_id)
        before, after = {"monthly_limit_cents": current}, {"monthly_limit_cents": new}
        return [Change(TargetKind.BUDGET, key, before, after, resource)]

    async def apply(
        self,
        conn: Conn,
        workspace_id: uuid.UUID,
        changes: Sequence[Change],
        action_id: uuid.UUID,
    ) -> None:
        """Upsert the budget row."""
        for change in changes:  # exactly one budget per action
            scope, _, target_id = change.key.partition(":")
            await store.budgets.upsert(
                conn, workspace_id, scope, target_id, change.after["monthly_limit_cents"], action_id
            )

    def summarize(self, changes: Sequence[Change]) -> dict[str, Any]:
        """The budget from → to."""
        budgets = [
            {
                "scope": c.key.partition(":")[0],
                "target_id": c.key.partition(":")[2],
                "previous_monthly_limit_cents": c.before["monthly_limit_cents"],
                "new_monthly_limit_cents": c.after["monthly_limit_cents"],
            }
            for c in changes
        ]
        return {"count": len(budgets), "agents": [], "truncated": False, "budgets": budgets}


ACTION = SetBudget()
