"""The decision log: one JSON line per decision, to a configurable sink.

``configure`` points the log at stderr (the default), stdout, a file (appended to), or
nowhere (``off``). Writing is kept off the request path: ``record`` only appends a small
tuple to a bounded in-memory buffer, and a background writer thread turns the buffered
records into JSON lines and writes and flushes them in batches, at most
``FLUSH_INTERVAL_S`` after the decision (sooner once ``BATCH_LINES`` are waiting).

``flush`` waits until every line recorded so far is written; ``stop`` flushes and ends the
writer (the server calls both on shutdown, so a graceful stop loses nothing; an
``atexit`` hook covers other exits of the interpreter). Lines keep the order of the
``record`` calls.

If the buffer is full (``BUFFER_LINES`` waiting, i.e. the sink has stopped accepting
writes for many seconds at full load), ``record`` drops the line rather than block the
event loop, and counts it in ``fleetward_policy_decision_log_dropped_total``; a sink that
raises on write has its batch counted there too. Nothing is dropped while the sink keeps
up.

While tracing is on, a line written for a traced request carries its ``trace_id``, the
same id the action's audit row and the services' log lines hold.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import prometheus_client

from services.common import tracing
from services.policy.engine import Decision

FLUSH_INTERVAL_S = 0.02
BATCH_LINES = 512
BUFFER_LINES = 65_536
STOP_TIMEOUT_S = 5.0

DROPPED = prometheus_client.Counter(
    "fleetward_policy_decision_log_dropped",
    "Decision lines not written: buffer full (stuck sink) or the sink failed.",
)
log = logging.getLogger(__name__)

# decision_id, unix time, caller, subject, workspace, action, resource, allowed, reason,
# policy_version, latency_us, trace_id (or None); or a CheckResources batch, already a
# JSON-ready dict
_Entry = (
    tuple[str, float, str, str, str, str, str, bool, str, str, int, str | None] | dict[str, object]
)
# A batch line names at most this many denied resources (its counts cover them all).
BATCH_DENIED_LISTED = 100


class _Writer:
    """A bounded buffer of records and the thread that writes them to one stream."""

    def __init__(self, stream: IO[str], *, owns_stream: bool) -> None:
        self._stream = stream
        self._owns_stream = owns_stream
        self._buffer: collections.deque[_Entry | threading.Event] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()

    def append(self, entry: _Entry) -> None:
        """Buffer one record (drop and count it when the buffer is full)."""
        size = len(self._buffer)
        if size >= BUFFER_LINES:
            DROPPED.inc()
            return
        self._buffer.append(entry)
        if size + 1 == BATCH_LINES:
            self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until everything appended before this call is written and flushed.

        Returns:
            Whether it was written within ``timeout`` seconds.
        """
        if not self._thread.is_alive():
            return not self._buffer
        done = threading.Event()
        self._buffer.append(done)  # a marker: set by the writer once it reaches it
        self._wake.set()
        return done.wait(timeout)

    def stop(self, timeout: float) -> bool:
        """Write what is buffered, end the thread and close an owned file.

        Returns:
            Whether the thread ended within ``timeout`` seconds.
        """
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(FLUSH_INTERVAL_S)
                self._wake.clear()
                stopping = self._stopping  # read before the drain: nothing appended is missed
                self._drain()
                if stopping:
                    return
        finally:
            if self._owns_stream:
                self._stream.close()

    def _drain(self) -> None:
        lines: list[str] = []
        while self._buffer:
            item = self._buffer.popleft()
            if isinstance(item, threading.Event):
                self._write(lines)
                lines = []
                item.set()
            else:
                lines.append(_line(item))
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            DROPPED.inc(len(lines))
            log.exception("could not write %d decision lines", len(lines))


def _line(entry: _Entry) -> str:
    if isinstance(entry, dict):
        return json.dumps(entry, separators=(",", ":"))
    (
        decision_id,
        when,
        caller,
        subject,
        workspace,
        action,
        resource,
        allowed,
        reason,
        policy_version,
        latency_us,
        trace_id,
    ) = entry
    line: dict[str, object] = {
        "decision_id": decision_id,
        "time": datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds"),
        "caller": caller,
        "subject": subject,
        "workspace": workspace,
        "action": action,
        "resource": resource,
        "allowed": allowed,
        "reason": reason,
        "policy_version": policy_version,
        "latency_us": latency_us,
    }
    if trace_id is not None:
        line["trace_id"] = trace_id
    return json.dumps(line, separators=(",", ":"))


_writer: _Writer | None = None
_lock = threading.Lock()


def configure(sink: str) -> None:
    """Send decision lines to ``stderr``, ``stdout``, a file path, or nowhere (``off``).

    Stops (and flushes) the writer of a previous configuration first.

    Args:
        sink: ``stderr``, ``stdout``, ``off`` or a file path (appended to).
    """
    global _writer
    with _lock:
        old, _writer = _writer, None
        if old is not None:
            old.stop(STOP_TIMEOUT_S)
        if sink == "off":
            return
        if sink in ("stderr", "stdout"):
            _writer = _Writer(sys.stderr if sink == "stderr" else sys.stdout, owns_stream=False)
        else:
            stream = Path(sink).open("a", encoding="utf-8")  # noqa: SIM115 - the writer closes it
            _writer = _Writer(stream, owns_stream=True)


def enabled() -> bool:
    """Whether decisions are being logged (the sink is not ``off``)."""
    return _writer is not None


def flush(timeout: float = STOP_TIMEOUT_S) -> bool:
    """Block until every line recorded so far is written and flushed to the sink.

    Args:
        timeout: Seconds to wait at most (a stuck sink does not hang the caller).

    Returns:
        Whether everything was written in time (``True`` when the log is off).
    """
    writer = _writer
    return True if writer is None else writer.flush(timeout)


def stop(timeout: float = STOP_TIMEOUT_S) -> bool:
    """Write what is buffered and stop the writer; later decisions are not logged.

    Args:
        timeout: Seconds to wait at most for the writer to finish.

    Returns:
        Whether the writer finished in time (``True`` when the log is off).
    """
    global _writer
    with _lock:
        writer, _writer = _writer, None
    return True if writer is None else writer.stop(timeout)


atexit.register(stop)


def record(
    *,
    decision_id: str,
    caller: str,
    subject: str,
    workspace: str,
    action: str,
    resource: str,
    decision: Decision,
    policy_version: str,
    latency_us: int,
) -> None:
    """Buffer one decision line for the writer (cheap no-op when the log is off)."""
    writer = _writer
    if writer is None:
        return
    writer.append(
        (
            decision_id,
            time.time(),
            caller,
            subject,
            workspace,
            action,
            resource,
            decision.allowed,
            decision.reason.value,
            policy_version,
            latency_us,
            tracing.current_trace_id(),
        )
    )


def record_batch(
    *,
    decision_id: str,
    caller: str,
    subject: str,
    workspace: str,
    action: str,
    resources: int,
    denied: list[tuple[str, Decision]],
    policy_version: str,
    latency_us: int,
) -> None:
    """Buffer one line for a CheckResources batch: counts, and the first denied resources.

    Args:
        decision_id: The batch's one decision id.
        caller: The calling service (its token's subject).
        subject: Who the question was about.
        workspace: The workspace asked about.
        action: The permission asked about.
        resources: How many resources were decided.
        denied: ``(resource, decision)`` of every denial, in request order.
        policy_version: The policy version that decided.
        latency_us: How long deciding took, in microseconds.
    """
    writer = _writer
    if writer is None:
        return
    line: dict[str, object] = {
        "decision_id": decision_id,
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "caller": caller,
        "subject": subject,
        "workspace": workspace,
        "action": action,
        "resources": resources,
        "allowed_count": resources - len(denied),
        "denied_count": len(denied),
        "denied": [
            {"resource": resource, "reason": decision.reason.value}
            for resource, decision in denied[:BATCH_DENIED_LISTED]
        ],
        "allowed": not denied,
        "policy_version": policy_version,
        "latency_us": latency_us,
    }
    trace_id = tracing.current_trace_id()
    if trace_id is not None:
        line["trace_id"] = trace_id
    writer.append(line)
