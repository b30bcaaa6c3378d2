"""Frozen settings of the policy service (every variable: docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.server import ServerTls
from services.common.settings import (
    SettingsError,
    check_secrets,
    env_int,
    env_list,
    env_str,
    process_env,
    tls_from_env,
)
from services.common.subjects import SERVICE_PREFIX
from services.common.tracing_settings import TracingSettings

# The action service's own subject; ``*`` lets any valid service token ask (dev, tests).
DEFAULT_CALLER = "svc:actions"
ANY_CALLER = "*"
SERVICE_NAME = "fleetward-policy"  # OTEL_SERVICE_NAME's default


@dataclass(frozen=True)
class PolicySettings:
    """Everything the policy service reads from its environment."""

    listen_addr: str = "127.0.0.1:50052"
    policy_dir: Path = Path("policies")
    service_jwt_secret: str = ""
    tls: ServerTls | None = None
    metrics_port: int = 9465
    metrics_addr: str = "127.0.0.1"
    log_level: str = "INFO"
    # Where decision lines go: stderr, stdout, off, or a file path.
    decision_log: str = "stderr"
    # Watch policy_dir and reload when files change (SIGHUP reloads either way).
    watch: bool = True
    reload_debounce_ms: int = 300
    shutdown_grace_s: float = 10.0
    # The service subjects whose tokens may ask (``*``: any valid service token).
    allowed_callers: frozenset[str] = frozenset({DEFAULT_CALLER})
    # OpenTelemetry (the OTEL_* variables): off unless OTEL_TRACES_EXPORTER names an exporter.
    tracing: TracingSettings = TracingSettings(service_name=SERVICE_NAME)  # noqa: RUF009 - frozen

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PolicySettings:
        """Read and check the environment."""
        env = process_env() if env is None else env
        watch = env_str(env, "FLEETWARD_POLICY_WATCH", "1").lower()
        if watch not in ("1", "0", "true", "false"):
            raise SettingsError(f"FLEETWARD_POLICY_WATCH must be 1 or 0, got {watch!r}")
        check_secrets(None, env_str(env, "FLEETWARD_SERVICE_JWT_SECRET"))
        callers = env_list(env, "FLEETWARD_POLICY_ALLOWED_CALLERS", DEFAULT_CALLER)
        odd = sorted(c for c in callers if c != ANY_CALLER and not c.startswith(SERVICE_PREFIX))
        if odd:
            raise SettingsError(
                f"FLEETWARD_POLICY_ALLOWED_CALLERS holds {odd}: list svc:<name> subjects or *"
            )
        return cls(
            listen_addr=env_str(env, "FLEETWARD_POLICY_ADDR", "127.0.0.1:50052"),
            policy_dir=Path(env_str(env, "FLEETWARD_POLICY_DIR", "policies")),
            service_jwt_secret=env_str(env, "FLEETWARD_SERVICE_JWT_SECRET"),
            tls=tls_from_env(env),
            metrics_port=env_int(env, "FLEETWARD_METRICS_PORT", 9465),
            metrics_addr=env_str(env, "FLEETWARD_METRICS_ADDR", "127.0.0.1"),
            log_level=env_str(env, "FLEETWARD_LOG_LEVEL", "INFO"),
            decision_log=env_str(env, "FLEETWARD_POLICY_DECISION_LOG", "stderr"),
            watch=watch in ("1", "true"),
            reload_debounce_ms=env_int(env, "FLEETWARD_POLICY_RELOAD_DEBOUNCE_MS", 300),
            allowed_callers=callers,
            tracing=TracingSettings.from_env(env, SERVICE_NAME),
        )
