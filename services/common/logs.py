"""Structured JSON log lines: one object per line, never a token or secret.

While tracing is on (:mod:`services.common.tracing`), a line written inside a span carries
its ``trace_id`` and ``span_id``. See docs/architecture.md §9.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from services.common import tracing

# Fields that callers pass with ``extra={...}`` and that belong in the JSON object.
CONTEXT_FIELDS = (
    "action_id",
    "request_id",
    "decision_id",
    "subject",
    "workspace_id",
    "method",
    "code",
    "latency_ms",
    "policy_version",
    "event",
)
# A JWT (three base64url parts) or a Bearer header value: redacted wherever it appears.
_SECRET_PATTERN = re.compile(
    r"(?i)(bearer\s+)?eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"
)


def redact(text: str) -> str:
    """Replace anything that looks like a JWT with ``[redacted]``."""
    return _SECRET_PATTERN.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """Formats records as single-line JSON objects with the context fields they carry."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        ids = tracing.current_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
