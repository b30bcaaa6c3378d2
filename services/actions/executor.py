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

from services.actions import access, authorize, idempotency, targets
from services.actions.authorize import Grant, Skip
from services.actions.call import Call
from services.actions.catalog import ActionKind, Change, Target
from services.actions.db import Conn, Row
from services.actions.model import NewAction, Outcome
from services.actions.runner import ActionRunner
from services.actions.validation import ExecuteCommand


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
    kind: ActionKind, kept: Sequence[Change], skipped: Sequence[Skip]
) -> dict[str, Any]:
    """The ``result`` of what was changed, plus what was skipped (when anything was)."""
    result = kind.summarize(kept)
    if skipped:
        result.update(authorize.result_skips(skipped))
    return result


class Executor(ActionRunner):
    """Runs Execute requests against the database and the policy service."""

    async def execute(self, call: Call, cmd: ExecuteCommand) -> Row:
        """The recorded (or, with validate_only, previewed) action row."""
        call.ensure_time_left()
        request_fp = fingerprint(cmd)
        # One statement for the key and the target; not held across the policy call.
        async with self._pool.acquire() as conn:
            if cmd.validate_only:
                target = await targets.look_up(conn, cmd.workspace_id, cmd.scope, cmd.target_id)
            else:
                existing, target = await targets.look_up_keyed(
                    conn, cmd.workspace_id, cmd.scope, cmd.target_id, call.subject, cmd.request_id
                )
                if existing is not None:
                    return await idempotency.replay(conn, existing, request_fp)
        if target is None:
            raise await access.not_found_or_denied(
                self._policy,
                call,
                cmd.workspace_id,
                cmd.kind.permission,
                cmd.scope,
                cmd.target_id or str(cmd.workspace_id),
            )
        # The target's own path first: a caller without it learns nothing more and costs
        # no plan of a whole department or fleet.
        gate = await authorize.grant(
            self._policy, call, cmd.workspace_id, cmd.kind.permission, [target.resource]
        )
        new = _new_action(cmd, call, request_fp, gate)
        if gate.denied:
            return await self.refuse(new, gate, gate.denial(), validate_only=cmd.validate_only)
        now = datetime.now(UTC)
        cmd.kind.precheck(target, cmd.params, now)
        grant, planned = gate, None
        if cmd.kind.reaches_beyond_target(cmd.scope):
            async with self._pool.acquire() as conn:
                planned = await cmd.kind.plan(conn, target, cmd.params, now, lock=False)
            resources = authorize.question_resources(target.resource, planned)
            grant = await authorize.grant(
                self._policy, call, cmd.workspace_id, cmd.kind.permission, resources
            )
            new = dataclasses.replace(
                new,
                roles=grant.roles,
                policy_version=grant.policy_version,
                decision_id=f"{gate.decision_id},{grant.decision_id}",
            )
            refused = grant.refusal(target.resource, planned, cmd.skip_denied)
            if refused is not None:
                return await self.refuse(new, grant, refused, validate_only=cmd.validate_only)
        if cmd.validate_only:
            return await self._preview(cmd, target, new, grant, planned, now)

        async def effect(conn: Conn, row: asyncpg.Record) -> Outcome:
            locked = await cmd.kind.plan(conn, target, cmd.params, datetime.now(UTC), lock=True)
            kept, skipped = grant.split(locked)
            if not cmd.kind.reaches_beyond_target(cmd.scope):
                authorize.require_checked(new.action_id, skipped)  # the one named resource
            await cmd.kind.apply(conn, target.workspace_id, kept, new.action_id)
            return Outcome(outcome_result(cmd.kind, kept, skipped), changes=kept)

        return await self.record(call, new, effect)

    async def _preview(
        self,
        cmd: ExecuteCommand,
        target: Target,
        new: NewAction,
        grant: Grant,
        planned: list[Change] | None,
        now: datetime,
    ) -> dict[str, Any]:
        if planned is None:
            async with self._pool.acquire() as conn:
                planned = await cmd.kind.plan(conn, target, cmd.params, now, lock=False)
        kept, skipped = grant.split(planned)
        return new.preview(outcome_result(cmd.kind, kept, skipped))


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
