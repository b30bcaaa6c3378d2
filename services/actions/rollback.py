"""Rollback (ARCHITECTURE §5.5): a new audited ``rollback`` action restoring ``action_targets``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.actions import access, audit, catalog, errors, idempotency, lifecycle, targets
from services.actions.call import Call
from services.actions.catalog import ActionKind, Change
from services.actions.db import Conn, Row, one
from services.actions.lifecycle import NewAction, Outcome, TaskSet
from services.actions.policy_client import PolicyClient
from services.actions.validation import RollbackCommand

ROLLBACK = "rollback"

# Current owners of the original's targets, locked in the fixed order (agents by agent_id).
LOCK_AGENTS = """
SELECT agent_id AS key, last_action_id, status FROM agents
WHERE workspace_id = $1 AND agent_id = ANY($2::text[]) ORDER BY agent_id FOR UPDATE"""
LOCK_BUDGETS = """
SELECT scope || ':' || target_id AS key, last_action_id, '' AS status FROM budgets
WHERE workspace_id = $1 AND scope || ':' || target_id = ANY($2::text[])
ORDER BY scope, target_id FOR UPDATE"""
# NO KEY UPDATE, not UPDATE: it still serialises rollbacks of one action, but does not
# block the foreign-key checks (KEY SHARE) of rows that reference the original (another
# rollback's pending row, the events of either), which need not wait for this one.
LOCK_ORIGINAL = audit.SELECT_ACTION + " FOR NO KEY UPDATE"
SELECT_AGENT_OWNERS = LOCK_AGENTS.replace(" FOR UPDATE", "")
SELECT_BUDGET_OWNERS = LOCK_BUDGETS.replace(" FOR UPDATE", "")


@dataclass(frozen=True)
class RollbackPlan:
    """Which targets can be restored and which were changed later (key → later action)."""

    restore: list[Change]
    superseded: dict[str, str]


def refusal(original: Row) -> errors.FleetwardError | None:
    """NOT_ROLLBACKABLE / ALREADY_ROLLED_BACK / NOT_COMPLETED, or None when it may be undone."""
    action_id = str(original["action_id"])
    if original["action_type"] == ROLLBACK:
        return errors.rollback_refused(
            "NOT_ROLLBACKABLE", action_id, "a rollback cannot be rolled back"
        )
    if not original["can_rollback"]:
        return errors.rollback_refused(
            "NOT_ROLLBACKABLE", action_id, f"{original['action_type']} cannot be rolled back"
        )
    if original["status"] == "rolled_back":
        return errors.rollback_refused(
            "ALREADY_ROLLED_BACK",
            action_id,
            f"action {action_id} was already rolled back by {original['rollback_action_id']}",
        )
    if original["status"] != "completed":
        return errors.rollback_refused(
            "NOT_COMPLETED", action_id, f"action {action_id} is {original['status']}, not completed"
        )
    return None


async def plan(conn: Conn, original: Row, *, lock: bool) -> RollbackPlan:
    """Split the original's targets into restorable and superseded (locked with ``lock``)."""
    rows = await conn.fetch(audit.SELECT_TARGETS, original["action_id"])
    changes = [Change(r["target_kind"], r["target_key"], r["before"], r["after"]) for r in rows]
    owners: dict[str, tuple[Any, str]] = {}
    for kind, sql in (
        ("agent", LOCK_AGENTS if lock else SELECT_AGENT_OWNERS),
        ("budget", LOCK_BUDGETS if lock else SELECT_BUDGET_OWNERS),
    ):
        keys = [c.key for c in changes if c.kind == kind]
        if keys:
            for r in await conn.fetch(sql, original["workspace_id"], keys):
                owners[f"{kind}/{r['key']}"] = (r["last_action_id"], r["status"])
    restore: list[Change] = []
    superseded: dict[str, str] = {}
    for change in changes:
        key = f"{change.kind}/{change.key}"
        owner, status = owners.get(key, (None, ""))
        if status == "retired":
            # Retired by the inventory (not an action): never brought back by a rollback.
            superseded[key] = "retired"
        elif owner == original["action_id"]:
            restore.append(change)
        else:
            superseded[key] = str(owner)
    return RollbackPlan(restore, superseded)


def summarize(kind: ActionKind, result_plan: RollbackPlan) -> dict[str, Any]:
    """The rollback's result: what was restored (from → to) and what was skipped."""
    undone = [Change(c.kind, c.key, c.after, c.before) for c in result_plan.restore]
    result = kind.summarize(undone)
    result["skipped"] = [
        {"target": key, "superseded_by": later}
        for key, later in sorted(result_plan.superseded.items())
    ]
    return result


class RollbackRunner:
    """Runs Rollback requests."""

    def __init__(self, pool: asyncpg.Pool, policy: PolicyClient, tasks: TaskSet) -> None:
        self._pool = pool
        self._policy = policy
        self._tasks = tasks

    async def rollback(self, call: Call, cmd: RollbackCommand) -> Row:
        """The recorded (or previewed) rollback action row."""
        call.ensure_time_left()
        request_fp = idempotency.fingerprint(
            {
                "workspace_id": str(cmd.workspace_id),
                "action_type": ROLLBACK,
                "action_id": str(cmd.action_id),
                "reason": cmd.reason,
                "skip_superseded": cmd.skip_superseded,
            }
        )
        if not cmd.validate_only:
            existing = await idempotency.find(
                self._pool, cmd.workspace_id, call.subject, cmd.request_id
            )
            if existing is not None:
                async with self._pool.acquire() as conn:
                    return await idempotency.replay(conn, existing, request_fp)

        original = await self._pool.fetchrow(audit.SELECT_ACTION, cmd.workspace_id, cmd.action_id)
        target = None
        if original is not None:
            target = await targets.look_up(
                self._pool, cmd.workspace_id, original["scope"], original["target_id"]
            )
        if original is None or target is None:
            raise await access.not_found_or_denied(
                self._policy, call, cmd.workspace_id, access.ROLLBACK, "action", str(cmd.action_id)
            )
        kind = catalog.get(original["action_type"])
        permissions = [access.ROLLBACK]
        if kind is not None:
            permissions.append(kind.permission)
        decisions = await self._policy.batch_check(
            [access.question(call, cmd.workspace_id, p, target.resource) for p in permissions],
            call.remaining(),
        )
        first = decisions[0]
        new = NewAction(
            action_id=uuid.uuid4(),
            workspace_id=cmd.workspace_id,
            action_type=ROLLBACK,
            scope=original["scope"],
            target_id=original["target_id"],
            params={"action_id": str(cmd.action_id), "skip_superseded": cmd.skip_superseded},
            reason=cmd.reason,
            subject=call.subject,
            roles=first.roles if first.has_role else (),
            can_rollback=False,
            request_id=cmd.request_id,
            fingerprint=request_fp,
            policy_version=first.policy_version,
            decision_id=",".join(d.decision_id for d in decisions),
            rollback_of_action_id=cmd.action_id,
        )
        for permission, decision in zip(permissions, decisions, strict=True):
            if not decision.allowed:
                error = access.denial(permission, decision)
                if decision.has_role and not cmd.validate_only:
                    replayed = await self._tasks.shielded(
                        lifecycle.record_denied(self._pool, new, error)
                    )
                    if replayed is not None:
                        return replayed
                raise error
        refused = refusal(original)
        if refused is not None or kind is None:
            raise refused or errors.internal(f"unknown action type {original['action_type']}")
        if cmd.validate_only:
            async with self._pool.acquire() as conn:
                preview = await plan(conn, original, lock=False)
            if preview.superseded and not cmd.skip_superseded:
                raise errors.superseded(str(cmd.action_id), preview.superseded)
            return new.preview(summarize(kind, preview))
        call.ensure_time_left()
        return await self._tasks.shielded(
            lifecycle.run(self._pool, new, _effect(new, kind, cmd), call.lock_timeout_ms())
        )


def _effect(new: NewAction, kind: ActionKind, cmd: RollbackCommand) -> lifecycle.Effect:
    async def effect(conn: Conn, row: asyncpg.Record) -> Outcome:
        # Locking the original first serialises concurrent rollbacks: one wins.
        original = one(
            await conn.fetchrow(LOCK_ORIGINAL, cmd.workspace_id, cmd.action_id),
            "original action",
        )
        refused = refusal(original)
        if refused is not None:
            raise refused
        locked = await plan(conn, original, lock=True)
        if locked.superseded and not cmd.skip_superseded:
            raise errors.superseded(str(cmd.action_id), locked.superseded)
        await kind.rollback(conn, cmd.workspace_id, locked.restore, new.action_id)
        rolled = one(
            await conn.fetchrow(audit.MARK_ROLLED_BACK, cmd.action_id, new.action_id), "rolled back"
        )
        return Outcome(
            summarize(kind, locked), [audit.event_for(rolled)], changes=_undo(locked.restore)
        )

    return effect


def _undo(changes: Sequence[Change]) -> list[Change]:
    return [Change(c.kind, c.key, c.after, c.before) for c in changes]
