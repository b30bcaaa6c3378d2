"""Safe hot reload: build a new snapshot to the side, then swap one reference.

Triggers: ``reload()`` (tests, SIGHUP) and a debounced watch of the policy directory.
A reload reads the files once, validates them, builds a new enforcer, runs the policy
tests against it and warms it, all in a worker thread; only a complete snapshot is ever
published. A failure keeps the last good snapshot serving and is recorded in
``last_reload_error`` / ``last_reload_at``, the log and ``fleetward_policy_reloads_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import watchfiles

from services.policy import metrics
from services.policy.loader import PolicyLoadError, PolicySnapshot, load_snapshot

log = logging.getLogger(__name__)


@dataclass
class PolicyState:
    """What the servicer reads: the current snapshot (one reference) and the last reload."""

    snapshot: PolicySnapshot | None = None
    last_reload_error: str = ""
    last_reload_at: datetime | None = None


class Reloader:
    """Loads the policy directory into ``state``, on demand and on file changes."""

    def __init__(
        self,
        directory: Path,
        state: PolicyState | None = None,
        *,
        debounce_ms: int = 300,
        on_loaded: Callable[[PolicySnapshot], Awaitable[None]] | None = None,
    ) -> None:
        """Create a reloader.

        Args:
            directory: The policy directory.
            state: Where to publish snapshots (a new state when omitted).
            debounce_ms: How long file changes must settle before a reload.
            on_loaded: Awaited after each successful load (e.g. to set health SERVING).
        """
        self.directory = directory
        self.state = state or PolicyState()
        self._debounce_ms = debounce_ms
        self._on_loaded = on_loaded
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._sighup_installed = False
        self._tasks: set[asyncio.Task[bool]] = set()

    async def reload(self) -> bool:
        """Load the files now; publish on success. Returns whether it succeeded."""
        async with self._lock:  # one reload at a time; the last one wins
            attempted = datetime.now(UTC)
            try:
                snapshot = await asyncio.to_thread(load_snapshot, self.directory)
            except PolicyLoadError as exc:
                return self._failed(attempted, str(exc))
            except Exception as exc:  # fail safe: an unexpected error must not kill reloads
                log.exception("unexpected error while loading the policy")
                return self._failed(attempted, f"unexpected error: {type(exc).__name__}: {exc}")
            previous = self.state.snapshot
            self.state.snapshot = snapshot  # the swap: one reference
            self.state.last_reload_error = ""
            self.state.last_reload_at = attempted
            metrics.RELOADS.labels("success").inc()
            metrics.POLICY.info({"policy_version": snapshot.version})
            metrics.LOADED_AT.set(snapshot.loaded_at.timestamp())
            log.info(
                "policy %s loaded (%d rules, %d role links; was %s)",
                snapshot.version,
                snapshot.rule_count,
                snapshot.role_link_count,
                previous.version if previous else "none",
                extra={"policy_version": snapshot.version, "event": "policy_reload"},
            )
            for warning in snapshot.warnings:
                log.warning("policy warning: %s", warning)
        if self._on_loaded is not None:
            await self._on_loaded(snapshot)
        return True

    def _failed(self, attempted: datetime, error: str) -> bool:
        self.state.last_reload_error = error
        self.state.last_reload_at = attempted
        metrics.RELOADS.labels("failure").inc()
        serving = self.state.snapshot.version if self.state.snapshot else "none"
        log.error(
            "policy reload failed; still serving %s: %s",
            serving,
            error,
            extra={"policy_version": serving, "event": "policy_reload_failed"},
        )
        return False

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                async for changes in watchfiles.awatch(
                    self.directory,
                    debounce=self._debounce_ms,
                    stop_event=self._stop,
                    recursive=True,
                ):
                    log.info("policy files changed (%d changes); reloading", len(changes))
                    await self.reload()
            except Exception:  # e.g. the directory was replaced: watch it again shortly
                log.exception("watching %s failed; retrying", self.directory)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    def start_watching(self) -> None:
        """Reload on file changes (debounced) until ``stop``."""
        if self._watch_task is None:
            self._stop.clear()
            self._watch_task = asyncio.create_task(self._watch(), name="policy-watch")

    def install_sighup(self) -> None:
        """Reload on SIGHUP (the main thread's event loop only)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._sighup_installed = True

    def _on_sighup(self) -> None:
        log.info("SIGHUP; reloading the policy")
        task = asyncio.create_task(self.reload(), name="policy-reload-sighup")
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop watching and remove the SIGHUP handler."""
        self._stop.set()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        if self._sighup_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup_installed = False
