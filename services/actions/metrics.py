"""The action service's own Prometheus metrics (ARCHITECTURE §9); RPC metrics are shared."""

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
    "Database pool connections of the action service, by state.",
    ["state"],
)


def track_pool(pool: asyncpg.Pool) -> None:
    """Report ``pool``'s open and idle connections on every scrape."""
    POOL_CONNECTIONS.labels("open").set_function(pool.get_size)
    POOL_CONNECTIONS.labels("idle").set_function(pool.get_idle_size)
