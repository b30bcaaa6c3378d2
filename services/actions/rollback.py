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
from typing import Any

import asyncpg

from services.actions import access, authorize, catalog, errors, idempotency, lifecycle, store
from services.actions.audit import documents
from services.actions.authorize import Grant, Skip
from services.actions.call import Call
from services.actions.catalog import ActionKind, Change, Target
from services.actions.db import Conn, Row, one
from services.actions.model import ActionRecord, ActionStatus, NewAction, Outcome
from services.actions.pipeline import Changes, Intent, Pipeline, Regate
from services.actions.policy_gateway import PolicyGateway
from services.actions.rollback_plan import RollbackPlan, plan
from services.actions.validation import RollbackCommand
from services.common.status import ServiceError

ROLLBACK = "rollback"


def refusal(original: ActionRecord) -> errors.ServiceError | None:
    """NOT_ROLLBACKABLE / ALREADY_ROLLED_BACK / NOT_COMPLETED, or None when it may be undone."""
    action_id = str(original.action_id)
    if original.action_type == ROLLBACK:
        return errors.rollback_refused(
            "NOT_ROLLBACKABLE", action_id, "a rollback cannot be rolled back"
        )
    if original.status == ActionStatus.ROLLED_BACK:
        return errors.rollback_refused(
            "ALREADY_ROLLED_BACK",
            action_id,
            f"action {action_id} was already rolled back by {original.rollback_action_id}",
        )
    if original.status != ActionStatus.COMPLETED:
        # Denied and failed actions changed nothing (and are recorded as not rollbackable).
        return errors.rollback_refused(
            "NOT_COMPLETED", action_id, f"action {action_id} is {original.status}, not completed"
        )
    if not original.can_rollback:
        return errors.rollback_refused(
            "NOT_ROLLBACKABLE", action_id, f"{original.action_type} cannot be rolled back"
        )
    return None


def summarize(
    kind: ActionKind[Any], kept: Sequence[Change], skipped: Sequence[Skip]
) -> dict[str, Any]:
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


class RollbackIntent(Intent):
    """One Rollback request in the pipeline."""

    def __init__(self, cmd: RollbackCommand) -> None:
        self.cmd = cmd
        self.workspace_id = cmd.workspace_id
        self.validate_only = cmd.validate_only
        self.permission = access.ROLLBACK
        self.original: ActionRecord | None = None
        self.kind: ActionKind[Any] | None = None
        self.planned = RollbackPlan([], {})
        self.undo: Grant | None = None  # None: nothing restorable, so nothing asked

    @property
    def external_effect(self) -> bool:
        """The original's kind's: undoing an external effect reaches outside too."""
        return self._kind().external_effect

    def fingerprint(self) -> str:
        """:func:`fingerprint` of the command."""
        return fingerprint(self.cmd)

    async def resolve(self, conn: Conn, call: Call) -> tuple[ActionRecord | None, Target | None]:
        """The key (not for a preview), then the original action and its target."""
        cmd = self.cmd
        if not cmd.validate_only:
            existing = await store.actions.find_by_key(
                conn, cmd.workspace_id, call.subject, cmd.request_id
            )
            if existing is not None:
                return existing, None
        self.original = await store.actions.get(conn, cmd.workspace_id, cmd.action_id)
        if self.original is None:
            return None, None
        target = await store.targets.look_up(
            conn, cmd.workspace_id, self.original.scope, self.original.target_id
        )
        return None, target

    async def not_found(self, policy: PolicyGateway, call: Call) -> ServiceError:
        """NOT_FOUND for the action, or PERMISSION_DENIED to a caller who may not know."""
        cmd = self.cmd
        return await access.not_found_or_denied(
            policy, call, cmd.workspace_id, access.ROLLBACK, "action", str(cmd.action_id)
        )

    def new_action(self, call: Call, fingerprint: str, gate: Grant) -> NewAction:
        """The rollback action, as ``gate`` decided it."""
        return _new_action(self.cmd, call, fingerprint, self._original(), gate)

    def precheck(self, target: Target) -> None:
        """NOT_ROLLBACKABLE / ALREADY_ROLLED_BACK / NOT_COMPLETED; an unknown kind."""
        original = self._original()
        self.kind = catalog.get(original.action_type)
        refused = refusal(original)
        if refused is not None or self.kind is None or self.kind.undo_permission is None:
            raise refused or errors.internal(f"unknown action type {original.action_type}")

    async def authorize_changes(
        self,
        pool: asyncpg.Pool,
        policy: PolicyGateway,
        call: Call,
        target: Target,
        decided: Changes,
        regate: Regate,
    ) -> Changes:
        """The undo permission on everything it would restore, under the gate's version."""
        cmd, kind = self.cmd, self._kind()
        async with pool.acquire() as conn:
            self.planned = await plan(conn, self._original(), lock=False)
        if not self.planned.restore:
            return decided
        permission = kind.undo_permission
        if permission is None:  # pragma: no cover - the precheck refused such a kind
            raise errors.internal(f"{kind.name} has no undo permission")
        resources = authorize.question_resources(None, self.planned.restore)
        undo = await authorize.grant(policy, call, cmd.workspace_id, permission, resources)
        self.undo = undo
        new, gate = decided.new, decided.grant
        if undo.policy_version != gate.policy_version:
            # A reload landed between the two questions: ask the first one again, so
            # that both hold under the version the action records.
            gate = await regate()
            if gate.policy_version != undo.policy_version:
                raise errors.policy_unavailable("the policy was reloaded during the check")
            new = self.new_action(call, decided.new.fingerprint, gate)
            if gate.denied:
                return Changes(new, gate, gate.denial())
        new = dataclasses.replace(new, decision_id=f"{gate.decision_id},{undo.decision_id}")
        return Changes(new, undo, undo.refusal(None, self.planned.restore, cmd.skip_denied))

    async def preview(self, pool: asyncpg.Pool, target: Target, new: NewAction) -> Row:
        """What the rollback would restore and skip; SUPERSEDED unless told to skip it."""
        cmd, planned = self.cmd, self.planned
        if planned.superseded and not cmd.skip_superseded:
            raise errors.superseded(str(cmd.action_id), planned.superseded)
        kept, skipped = _split(self.undo, planned)
        return new.preview(summarize(self._kind(), kept, skipped))

    def effect(self, target: Target, new: NewAction) -> lifecycle.Effect:
        """Lock the original, plan again under the locks, restore what was granted."""
        return _effect(new, self._kind(), self.cmd, self.undo)

    def _original(self) -> ActionRecord:
        if self.original is None:  # pragma: no cover - resolve found it before
            raise RuntimeError("the original action was not looked up")
        return self.original

    def _kind(self) -> ActionKind[Any]:
        if self.kind is None:  # pragma: no cover - the precheck set it
            raise RuntimeError("the original's kind was not checked")
        return self.kind


class RollbackRunner(Pipeline):
    """Runs Rollback requests."""

    async def rollback(self, call: Call, cmd: RollbackCommand) -> Row:
        """The recorded (or previewed) rollback action row."""
        return await self.run(call, RollbackIntent(cmd))


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
    cmd: RollbackCommand, call: Call, request_fp: str, original: ActionRecord, gate: Grant
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
        scope=original.scope,
        target_id=original.target_id,
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
    new: NewAction, kind: ActionKind[Any], cmd: RollbackCommand, undo: Grant | None
) -> lifecycle.Effect:
    async def effect(conn: Conn) -> Outcome:
        # Locking the original first serialises concurrent rollbacks: one wins.
        original = one(
            await store.actions.lock_for_rollback(conn, cmd.workspace_id, cmd.action_id),
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
            await store.actions.mark_rolled_back(conn, cmd.action_id, new.action_id),
            "rolled back",
        )
        return Outcome(
            summarize(kind, kept, skipped),
            [documents.event_for(rolled)],
            changes=[c.inverted() for c in kept],
        )

    return effect
