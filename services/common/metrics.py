"""Prometheus metrics shared by both services: RPCs by method and code, latency histograms."""

from __future__ import annotations

import time
from typing import Any

import prometheus_client

from services.common.observe import Context, status_code

RPC_REQUESTS = prometheus_client.Counter(
    "fleetward_rpc_requests_total",
    "gRPC requests handled, by method and status code.",
    ["method", "code"],
)
RPC_LATENCY = prometheus_client.Histogram(
    "fleetward_rpc_latency_seconds",
    "gRPC handling latency (for streams: the stream's lifetime), by method.",
    ["method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> int:
    """Serve /metrics on ``addr:port`` (port 0 disables it); return the port.

    Loopback by default (``FLEETWARD_METRICS_ADDR``): metrics describe the traffic, the
    outcomes and the policy version being served, so exposing them beyond the host is a
    decision, not a default.
    """
    if port:
        prometheus_client.start_http_server(port, addr=addr)
    return port


_CHILDREN: dict[Any, dict[tuple[str, ...], Any]] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: label sets here are few and fixed.

    ``labels()`` takes a lock and builds its key on every call; on the Check path that
    was a tenth of the handler's Python time.
    """
    children = _CHILDREN.setdefault(metric, {})
    found = children.get(labels)
    if found is None:
        found = children[labels] = metric.labels(*labels)
    return found


def record_rpc(method: str, _request: Any, context: Context, start: float, failed: bool) -> None:
    """Observer for :func:`~services.common.observe.observed`: count it, observe its latency."""
    child(RPC_LATENCY, method).observe(time.perf_counter() - start)
    child(RPC_REQUESTS, method, status_code(context, failed)).inc()
