"""One structured log line per RPC: method, status code, latency and the request's workspace.

The action line of an Execute (``services.actions.lifecycle``) carries the action id,
request id, decision id and subject; this line adds what every RPC has. Health checks
and reflection log at DEBUG so that load-balancer probes do not flood the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from services.common.observe import Context, status_code

log = logging.getLogger("fleetward.access")
QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def log_rpc(method: str, request: Any, context: Context, start: float, failed: bool) -> None:
    """Observer for :func:`~services.common.observe.observed`: one JSON line per finished RPC."""
    level = logging.DEBUG if method.startswith(QUIET_PREFIXES) else logging.INFO
    if not log.isEnabledFor(level):
        return
    extra: dict[str, Any] = {
        "method": method,
        "code": status_code(context, failed),
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
        "event": "rpc",
    }
    workspace = getattr(request, "workspace_id", "")
    if isinstance(workspace, str) and workspace:
        extra["workspace_id"] = workspace[:64]
    request_id = getattr(request, "request_id", "")
    if isinstance(request_id, str) and request_id:
        extra["request_id"] = request_id[:128]
    log.log(level, "%s %s", method, extra["code"], extra=extra)
