"""Execute (ARCHITECTURE §5.1): authenticate → validate → look up → check → record → act → announce.

Authentication and validation happen in the servicer; this module does the rest for a
validated :class:`ExecuteCommand`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.actions import access, idempotency, lifecycle, targets
from services.actions.call import Call
from services.actions.catalog import Target
from services.actions.db import Conn, Row
from services.actions.lifecycle import NewAction, Outcome, TaskSet
from services.actions.policy_client import PolicyClient
from services.actions.validation import ExecuteCommand


class Executor:
    """Runs Execute requests against the database and the policy service."""

    def __init__(self, pool: asyncpg.Pool, policy: PolicyClient, tasks: TaskSet) -> None:
        self._pool = pool
        self._policy = policy
        self._tasks = tasks

    async def execute(self, call: Call, cmd: ExecuteCommand) -> Row:
        """The recorded (or, with validate_only, previewed) action row."""
        call.ensure_time_left()
        request_fp = idempotency.fingerprint(
            {
                "workspace_id": str(cmd.workspace_id),
                "action_type": cmd.kind.name,
                "scope": cmd.scope,
                "target_id": cmd.target_id,
                "reason": cmd.reason,
                "params": cmd.params_json,
            }
        )
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
        decision = await self._policy.check(
            access.question(call, cmd.workspace_id, cmd.kind.permission, target.resource),
            call.remaining(),
        )
        new = NewAction(
            action_id=uuid.uuid4(),
            workspace_id=cmd.workspace_id,
            action_type=cmd.kind.name,
            scope=cmd.scope,
            target_id=cmd.target_id,
            params=cmd.params_json,
            reason=cmd.reason,
            subject=call.subject,
            roles=decision.roles if decision.has_role else (),
            can_rollback=cmd.kind.can_rollback,
            request_id=cmd.request_id,
            fingerprint=request_fp,
            policy_version=decision.policy_version,
            decision_id=decision.decision_id,
        )
        if not decision.allowed:
            error = access.denial(cmd.kind.permission, decision)
            if decision.has_role and not cmd.validate_only:
                replayed = await self._tasks.shielded(
                    lifecycle.record_denied(self._pool, new, error)
                )
                if replayed is not None:
                    return replayed
            raise error
        cmd.kind.precheck(target)
        if cmd.validate_only:
            return await self._preview(cmd, target, new)
        call.ensure_time_left()

        async def effect(conn: Conn, row: asyncpg.Record) -> Outcome:
            changes = await cmd.kind.execute(
                conn, target, cmd.params, new.action_id, datetime.now(UTC)
            )
            return Outcome(cmd.kind.summarize(changes), changes=changes)

        return await self._tasks.shielded(
            lifecycle.run(self._pool, new, effect, call.lock_timeout_ms())
        )

    async def _preview(self, cmd: ExecuteCommand, target: Target, new: NewAction) -> dict[str, Any]:
        async with self._pool.acquire() as conn:
            changes = await cmd.kind.plan(conn, target, cmd.params, datetime.now(UTC), lock=False)
        return new.preview(cmd.kind.summarize(changes))
