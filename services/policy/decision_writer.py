"""The decision log's writer: a bounded buffer of records and the thread that writes them.

``DecisionWriter.append`` only appends a small record to an in-memory buffer, so the
request path never waits on the sink; a background thread turns the buffered records into
JSON lines and writes and flushes them in batches, at most ``FLUSH_INTERVAL_S`` after the
decision (sooner once ``BATCH_LINES`` are waiting). Lines keep the order of ``append``.

If the buffer is full (``BUFFER_LINES`` waiting, i.e. the sink has stopped accepting
writes for many seconds at full load), ``append`` drops the line rather than block the
event loop, and counts it in ``fleetward_policy_decision_log_dropped_total``; a sink that
raises on write has its batch counted there too. Nothing is dropped while the sink keeps
up. Which sink, and when to flush or stop, is ``decision_log.py``'s job.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from datetime import UTC, datetime
from typing import IO

import prometheus_client

FLUSH_INTERVAL_S = 0.02
BATCH_LINES = 512
BUFFER_LINES = 65_536

DROPPED = prometheus_client.Counter(
    "fleetward_policy_decision_log_dropped",
    "Decision lines not written: buffer full (stuck sink) or the sink failed.",
)
# The decision log's logger name, as before this module was split out of it.
log = logging.getLogger("services.policy.decision_log")

# decision_id, unix time, caller, subject, workspace, action, resource, allowed, reason,
# policy_version, latency_us, trace_id (or None); or a CheckResources batch, already a
# JSON-ready dict
Entry = (
    tuple[str, float, str, str, str, str, str, bool, str, str, int, str | None] | dict[str, object]
)


class DecisionWriter:
    """A bounded buffer of records and the thread that writes them to one stream."""

    def __init__(self, stream: IO[str], *, owns_stream: bool) -> None:
        self._stream = stream
        self._owns_stream = owns_stream
        self._buffer: collections.deque[Entry | threading.Event] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()

    def append(self, entry: Entry) -> None:
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


def _line(entry: Entry) -> str:
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
