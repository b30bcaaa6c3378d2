"""The one pipeline Execute and Rollback run through (docs/architecture.md §5).

A request is an :class:`Intent`; :meth:`Pipeline.run` takes every intent through the same
steps, in this order:

1. the deadline, the request's fingerprint, and an earlier outcome under its
   idempotency key (replayed, or its key reused with another request refused);
2. the target (NOT_FOUND, or PERMISSION_DENIED to a caller who may not learn of it);
3. the permission on the target's own path; a refusal is recorded (:meth:`Pipeline.refuse`);
4. the intent's precheck (e.g. ALREADY_IN_STATE, NOT_COMPLETED);
5. the permission on every resource the action would change, under one policy version
   (docs/architecture.md §5.10); a refusal is recorded;
6. a ``validate_only`` preview, or the recorded action run to its final status, shielded
   from the caller's cancellation (:meth:`Pipeline.record`).

Each intent supplies only what differs: how it finds its target, what it plans and what
its effect does.

An action the service takes itself, as a ``system:`` actor (the expiring-pause resume), is
a :class:`SystemIntent`, taken by :meth:`Pipeline.run_as_system` through steps 1, 2, 4
and 6 only: its authority is the rule that made it (the pause it ends, re-checked under
the job's claim), not the policy service, whose outage must not keep agents paused
(docs/architecture.md §5.8). No RPC builds one.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from services.actions import authorize, denials, errors, idempotency, lifecycle
from services.actions.authorize import Grant
from services.actions.call import Call
from services.actions.catalog import Target
from services.actions.db import Conn, Row
from services.actions.denials import DenialLimit
from services.actions.model import ActionRecord, NewAction
from services.actions.policy_gateway import PolicyGateway
from services.common.names import SYSTEM_PREFIX
from services.common.status import ServiceError
from services.common.tasks import TaskSet

# Asks the target's own question again (a policy reload between two questions).
Regate = Callable[[], Awaitable[Grant]]


@dataclass(frozen=True)
class Changes:
    """What step 5 decided: the action as it will be recorded, the grant a refusal is
    recorded under, and the refusal (None: go on).
    """

    new: NewAction
    grant: Grant
    refusal: ServiceError | None = None


class Intent(ABC):
    """One request on its way through the pipeline (an instance per request: it keeps what
    it learns on the way, for its preview and its effect).
    """

    workspace_id: uuid.UUID
    validate_only: bool
    # The permission on the target's own path (step 3).
    permission: str

    @property
    def external_effect(self) -> bool:
        """Whether the effect reaches outside PostgreSQL (recorded in two steps)."""
        return False

    @abstractmethod
    def fingerprint(self) -> str:
        """The request's fingerprint (what its idempotency key must always mean)."""

    @abstractmethod
    async def resolve(self, conn: Conn, call: Call) -> tuple[ActionRecord | None, Target | None]:
        """Step 1 and 2 on one connection: the row already under the key (never looked up
        for a preview), else the target (None: not found).
        """

    @abstractmethod
    async def not_found(self, policy: PolicyGateway, call: Call) -> ServiceError:
        """NOT_FOUND, or PERMISSION_DENIED when the caller may not learn what is missing."""

    @abstractmethod
    def new_action(self, call: Call, fingerprint: str, gate: Grant) -> NewAction:
        """The action to record, as decided by ``gate``."""

    @abstractmethod
    def precheck(self, target: Target) -> None:
        """Step 4: raise what makes the request impossible whatever the policy says."""

    @abstractmethod
    async def authorize_changes(
        self,
        pool: asyncpg.Pool,
        policy: PolicyGateway,
        call: Call,
        target: Target,
        decided: Changes,
        regate: Regate,
    ) -> Changes:
        """Step 5: plan without locks and ask about every resource the action would change.

        ``decided`` holds the action and grant of step 3.
        """

    @abstractmethod
    async def preview(self, pool: asyncpg.Pool, target: Target, new: NewAction) -> Row:
        """Step 6 with ``validate_only``: the row as it would be recorded; nothing written."""

    @abstractmethod
    def effect(self, target: Target, new: NewAction) -> lifecycle.Effect:
        """Step 6: the effect, run inside the action's transaction (it locks and re-plans)."""


class SystemIntent(ABC):
    """An action the service takes itself, as a ``system:`` actor (one instance per run)."""

    workspace_id: uuid.UUID

    @property
    def external_effect(self) -> bool:
        """Whether the effect reaches outside PostgreSQL (recorded in two steps)."""
        return False

    @abstractmethod
    def fingerprint(self) -> str:
        """The action's fingerprint (what its idempotency key must always mean)."""

    @abstractmethod
    async def resolve(self, conn: Conn, call: Call) -> tuple[ActionRecord | None, Target | None]:
        """Steps 1 and 2: the row already under the key, else the target (None: gone)."""

    @abstractmethod
    def new_action(self, call: Call, fingerprint: str) -> NewAction:
        """The action to record."""

    @abstractmethod
    def precheck(self, target: Target) -> None:
        """Step 4: raise what makes the action impossible."""

    @abstractmethod
    def effect(self, target: Target, new: NewAction) -> lifecycle.Effect:
        """Step 6: the effect, run inside the action's transaction (it locks and re-plans)."""


class Pipeline:
    """Runs intents (the base of the Execute and Rollback runners)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: PolicyGateway,
        tasks: TaskSet,
        denial_limit: DenialLimit = DenialLimit(),  # noqa: B008 - frozen
    ) -> None:
        """Create the pipeline.

        Args:
            pool: The main database pool.
            policy: The policy service.
            tasks: Where work that must finish even if the caller leaves is shielded.
            denial_limit: How many denials of one subject per workspace are recorded in
                a window before further ones are answered RATE_LIMITED.
        """
        self._pool = pool
        self._policy = policy
        self._tasks = tasks
        self._denial_limit = denial_limit

    @property
    def pool(self) -> asyncpg.Pool:
        """The main database pool."""
        return self._pool

    async def _resolve(
        self, call: Call, intent: Intent | SystemIntent, fingerprint: str
    ) -> ActionRecord | Target | None:
        """Steps 1 and 2: the original outcome under the key, else the target (or None).

        The connection is not held across the policy call that follows.
        """
        call.ensure_time_left()
        async with self._pool.acquire() as conn:
            existing, target = await intent.resolve(conn, call)
            if existing is not None:
                return await idempotency.replay(conn, existing, fingerprint)
        return target

    async def run(self, call: Call, intent: Intent) -> Row:
        """The recorded (or, with ``validate_only``, previewed) action row."""
        fingerprint = intent.fingerprint()
        target = await self._resolve(call, intent, fingerprint)
        if isinstance(target, ActionRecord):
            return target
        if target is None:
            raise await intent.not_found(self._policy, call)
        resource = target.resource

        async def regate() -> Grant:
            return await authorize.grant(
                self._policy, call, intent.workspace_id, intent.permission, [resource]
            )

        # The target's own path first: a caller without it learns nothing more and costs
        # no plan of a whole department or fleet.
        gate = await regate()
        new = intent.new_action(call, fingerprint, gate)
        if gate.denied:
            return await self.refuse(new, gate, gate.denial(), validate_only=intent.validate_only)
        intent.precheck(target)
        decided = await intent.authorize_changes(
            self._pool, self._policy, call, target, Changes(new, gate), regate
        )
        if decided.refusal is not None:
            return await self.refuse(
                decided.new, decided.grant, decided.refusal, validate_only=intent.validate_only
            )
        if intent.validate_only:
            return await intent.preview(self._pool, target, decided.new)
        effect = intent.effect(target, decided.new)
        return await self.record(call, decided.new, effect, intent.external_effect)

    async def run_as_system(self, call: Call, intent: SystemIntent) -> ActionRecord:
        """The recorded action of a ``system:`` actor: steps 1, 2, 4 and 6, no policy."""
        if not call.subject.startswith(SYSTEM_PREFIX):  # a bug, never input: no RPC gets here
            raise errors.internal("only a system actor acts without the policy")
        fingerprint = intent.fingerprint()
        target = await self._resolve(call, intent, fingerprint)
        if isinstance(target, ActionRecord):
            return target
        if target is None:
            raise errors.internal("the target of a system action is gone")
        intent.precheck(target)
        new = intent.new_action(call, fingerprint)
        return await self.record(call, new, intent.effect(target, new), intent.external_effect)

    async def refuse(
        self, new: NewAction, grant: Grant, error: ServiceError, *, validate_only: bool
    ) -> Row:
        """Raise ``error`` for ``new``, first recording it as ``denied`` unless it is a
        preview or the caller has no role in the workspace (then it is answered only).

        Returns instead the original outcome when the request's key was already recorded
        (an idempotent repeat that raced past the first look-up).
        """
        record = grant.has_role and not validate_only
        return await denials.deny(self._pool, self._tasks, new, record, error, self._denial_limit)

    async def record(
        self, call: Call, new: NewAction, effect: lifecycle.Effect, external_effect: bool
    ) -> ActionRecord:
        """Record ``new`` and run ``effect`` to its final status, shielded from the caller's
        cancellation (a recorded action always finishes); the final row. An external
        effect is recorded in two steps, any other in one transaction.
        """
        call.ensure_time_left()
        return await self._tasks.shielded(
            lifecycle.run(
                self._pool,
                new,
                effect,
                call.lock_timeout_ms(),
                external_effect=external_effect,
            )
        )
