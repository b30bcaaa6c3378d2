"""Rollback: a new audited ``rollback`` action restoring what ``action_targets`` recorded.

Authorization (docs/architecture.md §5.5): ``actions:rollback`` on the original's
target, and on every resource the rollback changes, the permission of the action that
makes that change (the kind's :attr:`~services.actions.catalog.ActionKind.undo_permission`:
undoing a pause resumes agents, so it needs ``actions:resume_agent`` on each of them).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.actions import access, authorize, catalog, errors, idempotency, lifecycle
from services.actions import targets as target_lookup
from services.actions.audit import documents
from services.actions.audit import store as audit_store
from services.actions.authorize import Grant, Skip
from services.actions.call import Call
from services.actions.catalog import ActionKind, Change
from services.actions.db import Conn, Row, one
from services.actions.model import ActionStatus, AgentStatus, NewAction, Outcome, Scope, TargetKind
from services.actions.runner import ActionRunner
from services.actions.validation import RollbackCommand
from services.common.names import FLEET_PATH, agent_path, department_path

ROLLBACK = "rollback"
SUPERSEDED = "superseded"

# Current owners of the original's targets, in the fixed lock order: agents by agent_id,
# budgets by (scope, target_id). An agent budget's policy path names the agent's
# department, so those agents are read first (FOR SHARE under lock: not moved meanwhile).
_AGENTS = """
SELECT agent_id AS key, last_action_id, status, department_id FROM agents
WHERE workspace_id = $1 AND agent_id = ANY($2::text[]) ORDER BY agent_id"""
_BUDGETS = """
SELECT scope || ':' || target_id AS key, last_action_id, '' AS status, scope, target_id
FROM budgets
WHERE workspace_id = $1 AND scope || ':' || target_id = ANY($2::text[])
ORDER BY scope, target_id"""
OWNERS = {
    (TargetKind.AGENT, False): _AGENTS,
    (TargetKind.AGENT, True): _AGENTS + " FOR UPDATE",
    (TargetKind.BUDGET, False): _BUDGETS,
    (TargetKind.BUDGET, True): _BUDGETS + " FOR UPDATE",
    ("budget agents", False): _AGENTS,
    ("budget agents", True): _AGENTS + " FOR SHARE",
}
# NO KEY UPDATE, not UPDATE: it still serialises rollbacks of one action, but does not
# block the foreign-key checks (KEY SHARE) of rows that reference the original (another
# rollback's pending row, the events of either), which need not wait for this one.
LOCK_ORIGINAL = audit_store.SELECT_ACTION + " FOR NO KEY UPDATE"


@dataclass(frozen=True)
class RollbackPlan:
    """The original's changes still restorable (each with its resource's path as of now),
    and the superseded ones (label → the later action, or ``retired``).
    """

    restore: list[Change]
    superseded: dict[str, str]

    def skips(self) -> list[Skip]:
        """The superseded targets as skips."""
        return [
            Skip(label, SUPERSEDED, {"superseded_by": later})
            for label, later in sorted(self.superseded.items())
        ]


def refusal(original: Row) -> errors.ServiceError | None:
    """NOT_ROLLBACKABLE / ALREADY_ROLLED_BACK / NOT_COMPLETED, or None when it may be undone."""
    action_id = str(original["action_id"])
    if original["action_type"] == ROLLBACK:
        return errors.rollback_refused(
            "NOT_ROLLBACKABLE", action_id, "a rollback cannot be rolled back"
        )
    if original["status"] == ActionStatus.ROLLED_BACK:
        return errors.rollback_refused(
            "ALREADY_ROLLED_BACK",
            action_id,
            f"action {action_id} was already rolled back by {original['rollback_action_id']}",
        )
    if original["status"] != ActionStatus.COMPLETED:
        # Denied and failed actions changed nothing (and are recorded as not rollbackable).
        return errors.rollback_refused(
            "NOT_COMPLETED", action_id, f"action {action_id} is {original['status']}, not completed"
        )
    if not original["can_rollback"]:
        return errors.rollback_refused(
            "NOT_ROLLBACKABLE", action_id, f"{original['action_type']} cannot be rolled back"
        )
    return None


def _path(kind: str, owner: asyncpg.Record, departments: dict[str, str]) -> str:
    """The policy path of what an owner row holds: an agent, or a budget of the fleet, a
    department or an agent ("" when that agent is unknown: never checked, never applied).
    """
    if kind == TargetKind.AGENT:
        return agent_path(owner["department_id"], owner["key"])
    if owner["scope"] == Scope.FLEET:
        return FLEET_PATH
    if owner["scope"] == Scope.DEPARTMENT:
        return department_path(owner["target_id"])
    department = departments.get(owner["target_id"])
    return "" if department is None else agent_path(department, owner["target_id"])


async def plan(conn: Conn, original: Row, *, lock: bool) -> RollbackPlan:
    """Split the original's targets into restorable and superseded (locked with ``lock``)."""
    rows = await conn.fetch(audit_store.SELECT_TARGETS, original["action_id"])
    workspace_id = original["workspace_id"]
    keys = {
        kind: [r["target_key"] for r in rows if r["target_kind"] == kind] for kind in TargetKind
    }
    agent_budgets = [k.partition(":")[2] for k in keys[TargetKind.BUDGET] if k.startswith("agent:")]
    departments: dict[str, str] = {}
    if agent_budgets:
        agents = await conn.fetch(OWNERS["budget agents", lock], workspace_id, agent_budgets)
        departments = {a["key"]: a["department_id"] for a in agents}
    owners: dict[str, tuple[asyncpg.Record, str]] = {}
    for kind in TargetKind:
        if keys[kind]:
            for row in await conn.fetch(OWNERS[kind, lock], workspace_id, keys[kind]):
                owners[f"{kind}/{row['key']}"] = (row, _path(kind, row, departments))
    restore: list[Change] = []
    superseded: dict[str, str] = {}
    for r in rows:
        label = f"{r['target_kind']}/{r['target_key']}"
        owner, path = owners.get(label) or (None, "")
        if owner is not None and owner["status"] == AgentStatus.RETIRED:
            # Retired by the inventory (not an action): never brought back by a rollback.
            superseded[label] = AgentStatus.RETIRED
        elif owner is not None and owner["last_action_id"] == original["action_id"]:
            restore.append(Change(r["target_kind"], r["target_key"], r["before"], r["after"], path))
        else:
            superseded[label] = str(None if owner is None else owner["last_action_id"])
    return RollbackPlan(restore, superseded)


def summarize(kind: ActionKind, kept: Sequence[Change], skipped: Sequence[Skip]) -> dict[str, Any]:
    """The rollback's result: what was restored (from → to) and what was skipped."""
    result = kind.summarize([c.inverted() for c in kept])
    result.update(authorize.result_skips(skipped))
    return result


def fingerprint(cmd: RollbackCommand) -> str:
    """The request fingerprint (``skip_denied`` only when set, as for Execute)."""
    request: dict[str, Any] = {
        "workspace_id": str(cmd.workspace_id),
        "action_type": ROLLBACK,
        "action_id": str(cmd.action_id),
        "reason": cmd.reason,
        "skip_superseded": cmd.skip_superseded,
    }
    if cmd.skip_denied:
        request["skip_denied"] = True
    return idempotency.fingerprint(request)


class RollbackRunner(ActionRunner):
    """Runs Rollback requests."""

    async def rollback(self, call: Call, cmd: RollbackCommand) -> Row:
        """The recorded (or previewed) rollback action row."""
        call.ensure_time_left()
        request_fp = fingerprint(cmd)
        if not cmd.validate_only:
            existing = await idempotency.find(
                self._pool, cmd.workspace_id, call.subject, cmd.request_id
            )
            if existing is not None:
                async with self._pool.acquire() as conn:
                    return await idempotency.replay(conn, existing, request_fp)

        original = await self._pool.fetchrow(
            audit_store.SELECT_ACTION, cmd.workspace_id, cmd.action_id
        )
        target = None
        if original is not None:
            target = await target_lookup.look_up(
                self._pool, cmd.workspace_id, original["scope"], original["target_id"]
            )
        if original is None or target is None:
            raise await access.not_found_or_denied(
                self._policy, call, cmd.workspace_id, access.ROLLBACK, "action", str(cmd.action_id)
            )
        gate = await self._gate(call, cmd, target.resource)
        new = _new_action(cmd, call, request_fp, original, gate)
        if gate.denied:
            return await self.refuse(new, gate, gate.denial(), validate_only=cmd.validate_only)
        kind = catalog.get(original["action_type"])
        refused = refusal(original)
        if refused is not None or kind is None or kind.undo_permission is None:
            raise refused or errors.internal(f"unknown action type {original['action_type']}")
        async with self._pool.acquire() as conn:
            planned = await plan(conn, original, lock=False)
        undo = None
        if planned.restore:
            resources = authorize.question_resources(None, planned.restore)
            undo = await authorize.grant(
                self._policy, call, cmd.workspace_id, kind.undo_permission, resources
            )
            if undo.policy_version != gate.policy_version:
                # A reload landed between the two questions: ask the first one again, so
                # that both hold under the version the action records.
                gate = await self._gate(call, cmd, target.resource)
                if gate.policy_version != undo.policy_version:
                    raise errors.policy_unavailable("the policy was reloaded during the check")
                new = _new_action(cmd, call, request_fp, original, gate)
                if gate.denied:
                    return await self.refuse(
                        new, gate, gate.denial(), validate_only=cmd.validate_only
                    )
            new = dataclasses.replace(new, decision_id=f"{gate.decision_id},{undo.decision_id}")
            refused = undo.refusal(None, planned.restore, cmd.skip_denied)
            if refused is not None:
                return await self.refuse(new, undo, refused, validate_only=cmd.validate_only)
        if cmd.validate_only:
            if planned.superseded and not cmd.skip_superseded:
                raise errors.superseded(str(cmd.action_id), planned.superseded)
            kept, skipped = _split(undo, planned)
            return new.preview(summarize(kind, kept, skipped))
        return await self.record(call, new, _effect(new, kind, cmd, undo))

    async def _gate(self, call: Call, cmd: RollbackCommand, resource: str) -> Grant:
        return await authorize.grant(
            self._policy, call, cmd.workspace_id, access.ROLLBACK, [resource]
        )


def _split(undo: Grant | None, planned: RollbackPlan) -> tuple[list[Change], list[Skip]]:
    """What the rollback restores, and what it skips (superseded first, then not allowed)."""
    kept: list[Change]
    skipped: list[Skip]
    if undo is None:  # nothing restorable was planned, so nothing was authorized either
        kept, skipped = [], [Skip(c.label, authorize.UNCHECKED, {}) for c in planned.restore]
    else:
        kept, skipped = undo.split(planned.restore)
    return kept, [*planned.skips(), *skipped]


def _new_action(
    cmd: RollbackCommand, call: Call, request_fp: str, original: Row, gate: Grant
) -> NewAction:
    params: dict[str, Any] = {
        "action_id": str(cmd.action_id),
        "skip_superseded": cmd.skip_superseded,
    }
    if cmd.skip_denied:
        params["skip_denied"] = True
    return NewAction(
        action_id=uuid.uuid4(),
        workspace_id=cmd.workspace_id,
        action_type=ROLLBACK,
        scope=original["scope"],
        target_id=original["target_id"],
        params=params,
        reason=cmd.reason,
        subject=call.subject,
        roles=gate.roles,
        can_rollback=False,
        request_id=cmd.request_id,
        fingerprint=request_fp,
        policy_version=gate.policy_version,
        decision_id=gate.decision_id,
        trace_id=call.trace_id,
        rollback_of_action_id=cmd.action_id,
    )


def _effect(
    new: NewAction, kind: ActionKind, cmd: RollbackCommand, undo: Grant | None
) -> lifecycle.Effect:
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
        kept, skipped = _split(undo, locked)
        # A rollback names its targets: one that moved since the check fails it (a new
        # request checks the new path) rather than leave the original half undone.
        authorize.require_checked(new.action_id, skipped)
        await kind.rollback(conn, cmd.workspace_id, kept, new.action_id)
        rolled = one(
            await conn.fetchrow(audit_store.MARK_ROLLED_BACK, cmd.action_id, new.action_id),
            "rolled back",
        )
        return Outcome(
            summarize(kind, kept, skipped),
            [documents.event_for(rolled)],
            changes=[c.inverted() for c in kept],
        )

    return effect
