"""Expiring pauses (docs/architecture.md §5.8): the job that resumes agents whose pause passed.

Every action-service process runs :func:`resume_expired` periodically. It finds the
actions that left agents paused with a ``paused_until`` in the past (the agents'
``last_action_id``: normally a ``pause_agent``, or a rollback that restored a timed
pause), claims each such action's audit row with ``FOR NO KEY UPDATE SKIP LOCKED`` so
that exactly one replica handles it (``NO KEY``: a concurrent rollback inserting a row
that references it is not blocked, while a rollback locking it waits), re-checks under
the claim, and records ONE ``resume_agent`` action for it through the pipeline's system
path (:meth:`Pipeline.run_as_system`: the same key, target and recorded life as every
action: pending → in_progress → completed, ``action_targets``, hash-chained events). The
effect is the catalog's ``resume_agent`` (:meth:`ResumeAgent.plan_expired`): it locks and
resumes only the agents whose ``last_action_id`` is still that action and whose pause has
passed, so an agent paused again later stays paused.

The scheduler is a system actor (``system:scheduler``) and does not ask the policy
service: a policy outage must not keep agents paused beyond what their pause allowed.
Its resumes cannot be rolled back (re-pausing with a passed ``paused_until`` would only
be resumed again); pause the agents again instead.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg

from services.actions import idempotency, store
from services.actions.call import Call
from services.actions.catalog import Target
from services.actions.catalog.resume_agent import ACTION as RESUME
from services.actions.db import Conn
from services.actions.lifecycle import Effect
from services.actions.model import ActionRecord, NewAction, Outcome
from services.actions.pipeline import Pipeline, SystemIntent
from services.common import tracing
from services.common.status import ServiceError
from services.common.tokens import Principal

log = logging.getLogger(__name__)

SUBJECT = "system:scheduler"
REASON = "pause expired"
REQUEST_PREFIX = "pause-expired"
BATCH = 100


class ExpiredPause(SystemIntent):
    """The resume of one expired pause (``pause_id``), attempt ``attempt``."""

    def __init__(self, pause: asyncpg.Record, attempt: int) -> None:
        self.workspace_id: uuid.UUID = pause["workspace_id"]
        self.pause_id: uuid.UUID = pause["action_id"]
        self.scope: str = pause["scope"]
        self.target_id: str = pause["target_id"]
        self.attempt = attempt
        self.request_id = f"{REQUEST_PREFIX}:{self.pause_id}:{attempt}"

    @property
    def external_effect(self) -> bool:
        """``resume_agent``'s."""
        return RESUME.external_effect

    def fingerprint(self) -> str:
        """The pause and the attempt."""
        return idempotency.fingerprint(
            {"expired_action_id": str(self.pause_id), "attempt": self.attempt}
        )

    async def resolve(self, conn: Conn, call: Call) -> tuple[ActionRecord | None, Target | None]:
        """No earlier row, and the pause's own target as it recorded it: nothing is read.

        The attempt's key is new (one more than the attempts counted under the job's claim),
        and were it taken, the recorded life's claim replays it anyway; the effect re-plans
        by the pause's id (its agents, wherever they are now).
        """
        return None, Target(self.workspace_id, self.scope, self.target_id, None)

    def new_action(self, call: Call, fingerprint: str) -> NewAction:
        """A ``resume_agent`` of the pause's target, by the system actor."""
        return NewAction(
            action_id=uuid.uuid4(),
            workspace_id=self.workspace_id,
            action_type=RESUME.name,
            scope=self.scope,
            target_id=self.target_id,
            params={},
            reason=REASON,
            subject=call.subject,
            roles=(),
            can_rollback=False,
            request_id=self.request_id,
            fingerprint=fingerprint,
            policy_version="",
            decision_id="",
            trace_id=call.trace_id,
        )

    def precheck(self, target: Target) -> None:
        """Nothing: the job re-checked the pause under its claim, and the effect re-plans."""

    def effect(self, target: Target, new: NewAction) -> Effect:
        """Resume (locked) the agents the pause still holds whose pause has passed."""

        async def effect(conn: Conn) -> Outcome:
            changes = await RESUME.plan_expired(conn, self.workspace_id, self.pause_id)
            await RESUME.apply(conn, self.workspace_id, changes, new.action_id)
            return Outcome(RESUME.summarize(changes), changes=changes)

        return effect


async def resume_expired(pipeline: Pipeline, *, limit: int = BATCH) -> list[uuid.UUID]:
    """One pass: a resume action per expired pause this replica claims; their ids."""
    recorded: list[uuid.UUID] = []
    for candidate in await store.agents.expired_pauses(pipeline.pool, limit):
        try:
            action_id = await _resume_one(
                pipeline, candidate["workspace_id"], candidate["action_id"]
            )
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


async def _resume_one(
    pipeline: Pipeline, workspace_id: uuid.UUID, pause_id: uuid.UUID
) -> uuid.UUID | None:
    async with pipeline.pool.acquire() as claim, claim.transaction():
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
        # The job run's trace, when tracing is on; no deadline (the lock wait is bounded).
        call = Call(Principal(SUBJECT, {}), None, tracing.request_trace_id(None))
        done = await pipeline.run_as_system(call, ExpiredPause(pause, attempts + 1))
        log.info(
            "expired pause of action %s resumed",
            pause_id,
            extra={
                "action_id": str(done.action_id),
                "request_id": done.request_id,
                "workspace_id": str(workspace_id),
                "subject": SUBJECT,
                "event": "scheduler.resumed",
            },
        )
        return done.action_id
