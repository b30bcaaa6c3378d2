"""Expiring pauses (docs/architecture.md §5.8): the job that resumes agents whose pause passed.

Every action-service process runs :func:`resume_expired` periodically. It finds the
actions that left agents paused with a ``paused_until`` in the past (the agents'
``last_action_id``: normally a ``pause_agent``, or a rollback that restored a timed
pause), claims each such action's audit row with ``FOR NO KEY UPDATE SKIP LOCKED`` so
that exactly one replica handles it (``NO KEY``: a concurrent rollback inserting a row
that references it is not blocked, while a rollback locking it waits), re-checks under
the claim, and records ONE ``resume_agent`` action for it through the normal lifecycle
(pending → in_progress → completed, ``action_targets``, hash-chained events). The effect
is the catalog's ``resume_agent`` (:meth:`ResumeAgent.plan_expired`): it locks and resumes
only the agents whose ``last_action_id`` is still that action and whose pause has passed,
so an agent paused again later stays paused.

The scheduler is a system actor (``system:scheduler``) and does not ask the policy
service: a policy outage must not keep agents paused beyond what their pause allowed.
Its resumes cannot be rolled back (re-pausing with a passed ``paused_until`` would only
be resumed again); pause the agents again instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg

from services.actions import idempotency, lifecycle, store
from services.actions.catalog.resume_agent import ACTION as RESUME
from services.actions.db import Conn
from services.actions.model import ActionRecord, NewAction, Outcome
from services.common import tracing
from services.common.status import ServiceError

log = logging.getLogger(__name__)

SUBJECT = "system:scheduler"
REASON = "pause expired"
REQUEST_PREFIX = "pause-expired"
BATCH = 100
LOCK_TIMEOUT_MS = 5000


async def resume_expired(pool: asyncpg.Pool, *, limit: int = BATCH) -> list[uuid.UUID]:
    """One pass: a resume action per expired pause this replica claims; their ids."""
    recorded: list[uuid.UUID] = []
    for candidate in await store.agents.expired_pauses(pool, limit):
        try:
            action_id = await _resume_one(pool, candidate["workspace_id"], candidate["action_id"])
        except ServiceError as err:
            log.warning(
                "expired pause not resumed: %s",
                err.message,
                extra={"action_id": str(candidate["action_id"]), "event": "scheduler.failed"},
            )
            continue
        if action_id is not None:
            recorded.append(action_id)
    return recorded


def _new_action(pause: asyncpg.Record, attempt: int) -> NewAction:
    request_id = f"{REQUEST_PREFIX}:{pause['action_id']}:{attempt}"
    return NewAction(
        action_id=uuid.uuid4(),
        workspace_id=pause["workspace_id"],
        action_type=RESUME.name,
        scope=pause["scope"],
        target_id=pause["target_id"],
        params={},
        reason=REASON,
        subject=SUBJECT,
        roles=(),
        can_rollback=False,
        request_id=request_id,
        fingerprint=idempotency.fingerprint(
            {"expired_action_id": str(pause["action_id"]), "attempt": attempt}
        ),
        policy_version="",
        decision_id="",
        trace_id=tracing.request_trace_id(None),  # the job run's trace, when tracing is on
    )


async def _resume_one(
    pool: asyncpg.Pool, workspace_id: uuid.UUID, pause_id: uuid.UUID
) -> uuid.UUID | None:
    async with pool.acquire() as claim, claim.transaction():
        pause = await store.history.claim_pause(claim, workspace_id, pause_id)
        if pause is None:
            return None  # another replica is on it
        # A fresh statement after the claim: sees what a replica that held it committed.
        if not await store.agents.still_expired(claim, workspace_id, pause_id):
            return None  # done meanwhile, or paused again by a later action
        # Earlier attempts for this pause (a failed one must not block a retry).
        attempts = await store.history.count_requests(
            claim, workspace_id, SUBJECT, f"{REQUEST_PREFIX}:{pause_id}:"
        )
        new = _new_action(pause, attempts + 1)

        async def effect(conn: Conn, _row: ActionRecord) -> Outcome:
            changes = await RESUME.plan_expired(conn, workspace_id, pause_id)
            await RESUME.apply(conn, workspace_id, changes, new.action_id)
            return Outcome(RESUME.summarize(changes), changes=changes)

        # Shielded: a shutdown that cancels the job never leaves the action half-handled.
        done = await asyncio.shield(lifecycle.run(pool, new, effect, LOCK_TIMEOUT_MS))
        log.info(
            "expired pause of action %s resumed",
            pause_id,
            extra={
                "action_id": str(done.action_id),
                "request_id": new.request_id,
                "workspace_id": str(workspace_id),
                "subject": SUBJECT,
                "event": "scheduler.resumed",
            },
        )
        return done.action_id
