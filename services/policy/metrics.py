"""The policy service's Prometheus metrics (defined once per process)."""

from __future__ import annotations

import prometheus_client

RELOADS = prometheus_client.Counter(
    "fleetward_policy_reloads",
    "Policy loads and reloads, by result (success or failure).",
    ["result"],
)
# Both series exist from the start, so "no failure yet" reads 0 rather than missing.
RELOADS.labels("success")
RELOADS.labels("failure")
POLICY = prometheus_client.Info(
    "fleetward_policy",
    "The policy being served (label policy_version).",
)
LOADED_AT = prometheus_client.Gauge(
    "fleetward_policy_loaded_timestamp_seconds",
    "Unix time when the policy being served was loaded.",
)
DECISIONS = prometheus_client.Counter(
    "fleetward_policy_decisions",
    "Policy decisions, by result (allow or deny) and reason.",
    ["result", "reason"],
)
