"""The decision log: one JSON line per decision, to a configurable sink.

``configure`` points the log at stderr (the default), stdout, a file (appended to), or
nowhere (``off``). Writing is kept off the request path: ``record`` only hands a small
tuple to a ``decision_writer.DecisionWriter``, whose background thread writes and
flushes the lines in batches shortly after the decision; when its bounded buffer is full
(a stuck sink) lines are dropped and counted, never waited for.

``flush`` waits until every line recorded so far is written; ``stop`` flushes and ends the
writer (the server calls both on shutdown, so a graceful stop loses nothing; an
``atexit`` hook covers other exits of the interpreter). Lines keep the order of the
``record`` calls.

While tracing is on, a line written for a traced request carries its ``trace_id``, the
same id the action's audit row and the services' log lines hold.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from services.common import tracing
from services.policy.decision_writer import DecisionWriter
from services.policy.engine import Decision

STOP_TIMEOUT_S = 5.0
# A batch line names at most this many denied resources (its counts cover them all).
BATCH_DENIED_LISTED = 100

_writer: DecisionWriter | None = None
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
            _writer = DecisionWriter(
                sys.stderr if sink == "stderr" else sys.stdout, owns_stream=False
            )
        else:
            stream = Path(sink).open("a", encoding="utf-8")  # noqa: SIM115 - the writer closes it
            _writer = DecisionWriter(stream, owns_stream=True)


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
