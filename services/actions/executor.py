"""Execute: authenticate → validate → look up → authorize → record → act → announce.

Authentication and validation happen in the servicer; this module does the rest for a
validated :class:`ExecuteCommand`. Authorization covers what the action changes, not
only what it names (:mod:`services.actions.authorize`): at department and fleet scope
the planned effect's every agent is checked too, and the effect, under its locks,
changes only what was allowed.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.actions import access, authorize, idempotency, lifecycle, store
from services.actions.authorize import Grant, Skip
from services.actions.call import Call
from services.actions.catalog import ActionKind, Change, Target
from services.actions.db import Conn, Row
from services.actions.model import ActionRecord, NewAction, Outcome
from services.actions.pipeline import Changes, Intent, Pipeline, Regate
from services.actions.policy_gateway import PolicyGateway
from services.actions.validation import ExecuteCommand
from services.common.status import ServiceError


def fingerprint(cmd: ExecuteCommand) -> str:
    """The request fingerprint (``skip_denied`` only when set, so that the fingerprints
    of requests recorded before it existed stay the same).
    """
    request: dict[str, Any] = {
        "workspace_id": str(cmd.workspace_id),
        "action_type": cmd.kind.name,
        "scope": cmd.scope,
        "target_id": cmd.target_id,
        "reason": cmd.reason,
        "params": cmd.params_json,
    }
    if cmd.skip_denied:
        request["skip_denied"] = True
    return idempotency.fingerprint(request)


def outcome_result(
    kind: ActionKind[Any], kept: Sequence[Change], skipped: Sequence[Skip]
) -> dict[str, Any]:
    """The ``result`` of what was changed, plus what was skipped (when anything was)."""
    result = kind.summarize(kept)
    if skipped:
        result.update(authorize.result_skips(skipped))
    return result


class ExecuteIntent(Intent):
    """One Execute request in the pipeline."""

    def __init__(self, cmd: ExecuteCommand) -> None:
        self.cmd = cmd
        self.workspace_id = cmd.workspace_id
        self.validate_only = cmd.validate_only
        self.permission = cmd.kind.permission
        self.now = datetime.now(UTC)
        self.grant: Grant | None = None  # what step 5 granted (the gate when it asked nothing)
        self.planned: list[Change] | None = None  # the unlocked plan, when step 5 made one

    @property
    def external_effect(self) -> bool:
        """The kind's."""
        return self.cmd.kind.external_effect

    def fingerprint(self) -> str:
        """:func:`fingerprint` of the command."""
        return fingerprint(self.cmd)

    async def resolve(self, conn: Conn, call: Call) -> tuple[ActionRecord | None, Target | None]:
        """The key and the target in one statement (the target alone for a preview)."""
        cmd = self.cmd
        if cmd.validate_only:
            return None, await store.targets.look_up(
                conn, cmd.workspace_id, cmd.scope, cmd.target_id
            )
        return await store.targets.look_up_keyed(
            conn, cmd.workspace_id, cmd.scope, cmd.target_id, call.subject, cmd.request_id
        )

    async def not_found(self, policy: PolicyGateway, call: Call) -> ServiceError:
        """NOT_FOUND for the target, or PERMISSION_DENIED to a caller who may not know."""
        cmd = self.cmd
        return await access.not_found_or_denied(
            policy,
            call,
            cmd.workspace_id,
            cmd.kind.permission,
            cmd.scope,
            cmd.target_id or str(cmd.workspace_id),
        )

    def new_action(self, call: Call, fingerprint: str, gate: Grant) -> NewAction:
        """The action, as ``gate`` decided it."""
        return _new_action(self.cmd, call, fingerprint, gate)

    def precheck(self, target: Target) -> None:
        """The kind's precheck (e.g. ALREADY_IN_STATE for the named agent)."""
        self.now = datetime.now(UTC)
        self.cmd.kind.precheck(target, self.cmd.params, self.now)

    async def authorize_changes(
        self,
        pool: asyncpg.Pool,
        policy: PolicyGateway,
        call: Call,
        target: Target,
        decided: Changes,
        regate: Regate,
    ) -> Changes:
        """Beyond an agent target, every agent and budget the plan changes, in one question."""
        cmd, gate = self.cmd, decided.grant
        self.grant = gate
        if not cmd.kind.reaches_beyond_target(cmd.scope):
            return decided
        async with pool.acquire() as conn:
            self.planned = await cmd.kind.plan(conn, target, cmd.params, self.now, lock=False)
        resources = authorize.question_resources(target.resource, self.planned)
        grant = await authorize.grant(
            policy, call, cmd.workspace_id, cmd.kind.permission, resources
        )
        self.grant = grant
        new = dataclasses.replace(
            decided.new,
            roles=grant.roles,
            policy_version=grant.policy_version,
            decision_id=f"{gate.decision_id},{grant.decision_id}",
        )
        return Changes(new, grant, grant.refusal(target.resource, self.planned, cmd.skip_denied))

    async def preview(self, pool: asyncpg.Pool, target: Target, new: NewAction) -> Row:
        """Every change the action would make, and what it would leave out and why."""
        cmd, planned = self.cmd, self.planned
        if planned is None:
            async with pool.acquire() as conn:
                planned = await cmd.kind.plan(conn, target, cmd.params, self.now, lock=False)
        kept, skipped = self._granted().split(planned)
        return new.preview(outcome_result(cmd.kind, kept, skipped))

    def effect(self, target: Target, new: NewAction) -> lifecycle.Effect:
        """Plan again under the row locks, keep what was granted, apply it."""
        cmd, grant = self.cmd, self._granted()

        async def effect(conn: Conn) -> Outcome:
            locked = await cmd.kind.plan(conn, target, cmd.params, datetime.now(UTC), lock=True)
            kept, skipped = grant.split(locked)
            if not cmd.kind.reaches_beyond_target(cmd.scope):
                authorize.require_checked(new.action_id, skipped)  # the one named resource
            await cmd.kind.apply(conn, target.workspace_id, kept, new.action_id)
            return Outcome(outcome_result(cmd.kind, kept, skipped), changes=kept)

        return effect

    def _granted(self) -> Grant:
        if self.grant is None:  # pragma: no cover - the pipeline runs step 5 first
            raise RuntimeError("the changes were not authorized")
        return self.grant


class Executor(Pipeline):
    """Runs Execute requests against the database and the policy service."""

    async def execute(self, call: Call, cmd: ExecuteCommand) -> Row:
        """The recorded (or, with validate_only, previewed) action row."""
        return await self.run(call, ExecuteIntent(cmd))


def _new_action(cmd: ExecuteCommand, call: Call, request_fp: str, gate: Grant) -> NewAction:
    return NewAction(
        action_id=uuid.uuid4(),
        workspace_id=cmd.workspace_id,
        action_type=cmd.kind.name,
        scope=cmd.scope,
        target_id=cmd.target_id,
        params=cmd.params_json,
        reason=cmd.reason,
        subject=call.subject,
        roles=gate.roles,
        can_rollback=cmd.kind.can_rollback,
        request_id=cmd.request_id,
        fingerprint=request_fp,
        policy_version=gate.policy_version,
        decision_id=gate.decision_id,
        trace_id=call.trace_id,
    )
