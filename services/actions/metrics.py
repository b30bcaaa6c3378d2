"""The action service's own Prometheus metrics (docs/architecture.md §9); RPC metrics are shared."""

from __future__ import annotations

import asyncpg
import prometheus_client

ACTION_OUTCOMES = prometheus_client.Counter(
    "fleetward_action_outcomes_total",
    "Recorded actions by type and final status (completed, failed, denied).",
    ["action_type", "outcome"],
)
POOL_CONNECTIONS = prometheus_client.Gauge(
    "fleetward_db_pool_connections",
    "Database pool connections of the action service, by pool (main, watch) and state "
    "(open, idle, max).",
    ["pool", "state"],
)
WATCH_STREAMS = prometheus_client.Gauge(
    "fleetward_watch_streams_open",
    "WatchActions streams currently open on this action service process.",
)
BACKGROUND_RUNS = prometheus_client.Counter(
    "fleetward_background_job_runs_total",
    "Runs of the background jobs (recovery, scheduler), by job and result.",
    ["job", "result"],
)


def track_pool(pool: asyncpg.Pool, name: str = "main") -> None:
    """Report ``pool``'s open, idle and maximum connections on every scrape."""
    POOL_CONNECTIONS.labels(name, "open").set_function(pool.get_size)
    POOL_CONNECTIONS.labels(name, "idle").set_function(pool.get_idle_size)
    POOL_CONNECTIONS.labels(name, "max").set_function(pool.get_max_size)
