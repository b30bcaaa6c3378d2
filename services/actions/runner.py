"""What Execute's and Rollback's runners share (docs/architecture.md §5): their
dependencies, recording a refusal, and running a recorded action to its final status.
"""

from __future__ import annotations

import asyncpg

from services.actions import denials, lifecycle
from services.actions.authorize import Grant
from services.actions.call import Call
from services.actions.db import Row
from services.actions.denials import DenialLimit
from services.actions.model import NewAction
from services.actions.policy_gateway import PolicyGateway
from services.common.status import ServiceError
from services.common.tasks import TaskSet


class ActionRunner:
    """The base of :class:`~services.actions.executor.Executor` and
    :class:`~services.actions.rollback.RollbackRunner`.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: PolicyGateway,
        tasks: TaskSet,
        denial_limit: DenialLimit = DenialLimit(),  # noqa: B008 - frozen
    ) -> None:
        """Create the runner.

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

    async def record(self, call: Call, new: NewAction, effect: lifecycle.Effect) -> Row:
        """Record ``new`` and run ``effect`` to its final status, shielded from the caller's
        cancellation (a recorded action always finishes); the final row.
        """
        call.ensure_time_left()
        return await self._tasks.shielded(
            lifecycle.run(self._pool, new, effect, call.lock_timeout_ms())
        )
