"""Background work of a service process: shielded tasks and periodic jobs.

:class:`TaskSet` runs work that must finish even when the RPC awaiting it is cancelled
(an action recorded as pending always reaches its final status) and lets a graceful
shutdown wait for it. :class:`PeriodicJob` runs a job now and every interval until it is
stopped, one ``job <name>`` trace per run while tracing is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import prometheus_client

from services.common import tracing

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskSet:
    """Runs work shielded from the caller's cancellation and keeps it until done."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def shielded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion even if the awaiting RPC is cancelled."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller may have gone away

    async def drain(self) -> None:
        """Wait for every shielded task (graceful shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class PeriodicJob:
    """Runs ``work`` now and every ``interval_s`` until :meth:`stop` (which lets a run finish).

    Each run is counted in ``runs`` (labels: job, result ``ok``, ``database_unavailable``
    or ``error``). A run that raises one of ``database_errors`` (the database cannot be
    reached) is a warning line; anything else is logged with its traceback. Neither stops
    the loop.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[Any]],
        interval_s: float,
        *,
        runs: prometheus_client.Counter,
        database_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        self._work = work
        self._interval_s = interval_s
        self._runs = runs
        self._database_errors = database_errors
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop in the background."""
        self._task = asyncio.create_task(self._loop(), name=f"fleetward-{self.name}")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current run (cancelled if it takes longer than ``timeout_s``)."""
        self._stop.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with tracing.span(f"job {self.name}"):  # one trace per run (tracing on)
                    await self._work()
                self._runs.labels(self.name, "ok").inc()
            except self._database_errors as exc:
                self._runs.labels(self.name, "database_unavailable").inc()
                log.warning("%s skipped: database unavailable (%s)", self.name, type(exc).__name__)
            except Exception:
                self._runs.labels(self.name, "error").inc()
                log.exception("%s failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval_s)
