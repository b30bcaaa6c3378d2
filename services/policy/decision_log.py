"""The decision log: one JSON line per decision, to a configurable sink.

Lines go to the logger ``fleetward.policy.decisions``; ``configure`` points it at stderr
(the default), a file, or nowhere (``off``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.policy.engine import Decision

LOGGER_NAME = "fleetward.policy.decisions"
log = logging.getLogger(LOGGER_NAME)


def configure(sink: str) -> None:
    """Send decision lines to ``stderr``, ``stdout``, a file path, or nowhere (``off``).

    Args:
        sink: ``stderr``, ``stdout``, ``off`` or a file path (appended to).
    """
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    log.propagate = False
    if sink == "off":
        log.setLevel(logging.CRITICAL + 1)
        return
    handler: logging.Handler
    if sink in ("stderr", "stdout"):
        handler = logging.StreamHandler(sys.stderr if sink == "stderr" else sys.stdout)
    else:
        handler = logging.FileHandler(Path(sink), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


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
    """Write one decision line (cheap no-op when the log is off)."""
    if not log.isEnabledFor(logging.INFO):
        return
    entry = {
        "decision_id": decision_id,
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "caller": caller,
        "subject": subject,
        "workspace": workspace,
        "action": action,
        "resource": resource,
        "allowed": decision.allowed,
        "reason": decision.reason.value,
        "policy_version": policy_version,
        "latency_us": latency_us,
    }
    log.info(json.dumps(entry, separators=(",", ":")))
