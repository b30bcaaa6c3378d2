"""Frozen settings of the action service (every variable: docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.server import ServerTls
from services.common.settings import (
    SettingsError,
    check_secrets,
    env_int,
    env_path,
    env_str,
    process_env,
    tls_from_env,
)
from services.common.tokens import DEFAULT_MAX_TTL_S
from services.common.tracing_settings import TracingSettings

SERVICE_NAME = "fleetward-actions"  # OTEL_SERVICE_NAME's default


@dataclass(frozen=True)
class ActionSettings:
    """Everything the action service reads from its environment."""

    database_url: str
    listen_addr: str = "127.0.0.1:50051"
    policy_target: str = "127.0.0.1:50052"
    policy_timeout_ms: int = 200
    jwt_secret: str | None = None
    jwt_jwks_file: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_max_ttl_s: int = DEFAULT_MAX_TTL_S
    service_jwt_secret: str = ""
    tls: ServerTls | None = None
    policy_tls_ca: Path | None = None
    # The action service's client certificate toward an mTLS policy service.
    policy_tls_cert: Path | None = None
    policy_tls_key: Path | None = None
    metrics_port: int = 9464
    metrics_addr: str = "127.0.0.1"
    log_level: str = "INFO"
    # Background jobs and graceful shutdown (docs/architecture.md §5.7, §5.8, §9).
    scheduler_interval_s: float = 5.0
    recovery_interval_s: float = 60.0
    shutdown_grace_s: float = 10.0
    # Recorded denials per subject and workspace per minute; beyond: RATE_LIMITED.
    denials_per_minute: int = 30
    # Database connections: the main pool, the watchers' own, and how long a request
    # waits for one before it is answered UNAVAILABLE.
    pool_size: int = 20
    watch_pool_size: int = 4
    pool_acquire_timeout_s: float = 5.0
    # Open WatchActions streams per process and per subject; HTTP/2 streams per connection.
    watch_max_streams: int = 2000
    watch_max_streams_per_subject: int = 100
    max_concurrent_streams: int = 1000
    # How often the event listener wakes every feed even without a NOTIFY.
    watch_poll_interval_s: float = 5.0
    # History events per second all streams may read from the table; how many streams
    # of one subject may read history at once.
    watch_replay_rate: int = 5000
    watch_replays_per_subject: int = 2
    # Signed checkpoints of the chain heads, written outside PostgreSQL (off when unset).
    checkpoint_dir: Path | None = None
    checkpoint_key_file: Path | None = None
    checkpoint_interval_s: float = 60.0
    # OpenTelemetry (the OTEL_* variables): off unless OTEL_TRACES_EXPORTER names an exporter.
    tracing: TracingSettings = TracingSettings(service_name=SERVICE_NAME)  # noqa: RUF009 - frozen

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ActionSettings:
        """Read and check the environment; raise SettingsError naming what is wrong."""
        env = process_env() if env is None else env
        database_url = _required(env)
        max_ttl, denials = _token_limits(env)
        checkpoint_dir, checkpoint_key = _checkpoint_paths(env)
        return cls(
            database_url=database_url,
            listen_addr=env_str(env, "FLEETWARD_ACTIONS_ADDR", "127.0.0.1:50051"),
            policy_target=env_str(env, "FLEETWARD_POLICY_TARGET", "127.0.0.1:50052"),
            policy_timeout_ms=env_int(env, "FLEETWARD_POLICY_TIMEOUT_MS", 200),
            jwt_secret=env_str(env, "FLEETWARD_JWT_SECRET") or None,
            jwt_jwks_file=env_path(env, "FLEETWARD_JWT_JWKS_FILE"),
            jwt_audience=env_str(env, "FLEETWARD_JWT_AUDIENCE") or None,
            jwt_issuer=env_str(env, "FLEETWARD_JWT_ISSUER") or None,
            jwt_max_ttl_s=max_ttl,
            service_jwt_secret=env_str(env, "FLEETWARD_SERVICE_JWT_SECRET"),
            tls=tls_from_env(env),
            policy_tls_ca=env_path(env, "FLEETWARD_POLICY_TLS_CA"),
            policy_tls_cert=env_path(env, "FLEETWARD_POLICY_TLS_CERT"),
            policy_tls_key=env_path(env, "FLEETWARD_POLICY_TLS_KEY"),
            metrics_port=env_int(env, "FLEETWARD_METRICS_PORT", 9464),
            metrics_addr=env_str(env, "FLEETWARD_METRICS_ADDR", "127.0.0.1"),
            log_level=env_str(env, "FLEETWARD_LOG_LEVEL", "INFO"),
            scheduler_interval_s=_env_seconds(env, "FLEETWARD_SCHEDULER_INTERVAL_S", 5.0),
            recovery_interval_s=_env_seconds(env, "FLEETWARD_RECOVERY_INTERVAL_S", 60.0),
            shutdown_grace_s=_env_seconds(env, "FLEETWARD_SHUTDOWN_GRACE_S", 10.0),
            denials_per_minute=denials,
            pool_size=_env_positive(env, "FLEETWARD_DB_POOL_SIZE", 20),
            watch_pool_size=_env_positive(env, "FLEETWARD_WATCH_POOL_SIZE", 4),
            pool_acquire_timeout_s=_env_seconds(env, "FLEETWARD_DB_ACQUIRE_TIMEOUT_S", 5.0),
            watch_max_streams=_env_positive(env, "FLEETWARD_WATCH_MAX_STREAMS", 2000),
            watch_max_streams_per_subject=_env_positive(
                env, "FLEETWARD_WATCH_MAX_STREAMS_PER_SUBJECT", 100
            ),
            max_concurrent_streams=_env_positive(env, "FLEETWARD_MAX_CONCURRENT_STREAMS", 1000),
            watch_poll_interval_s=_env_seconds(env, "FLEETWARD_WATCH_POLL_INTERVAL_S", 5.0),
            watch_replay_rate=_env_positive(env, "FLEETWARD_WATCH_REPLAY_RATE", 5000),
            watch_replays_per_subject=_env_positive(env, "FLEETWARD_WATCH_REPLAYS_PER_SUBJECT", 2),
            checkpoint_dir=checkpoint_dir,
            checkpoint_key_file=checkpoint_key,
            checkpoint_interval_s=_env_seconds(env, "FLEETWARD_CHECKPOINT_INTERVAL_S", 60.0),
            tracing=TracingSettings.from_env(env, SERVICE_NAME),
        )


def _required(env: Mapping[str, str]) -> str:
    """DATABASE_URL, once the variables that must be set together or apart are checked."""
    database_url = env_str(env, "DATABASE_URL")
    if not database_url:
        raise SettingsError("DATABASE_URL is unset (make run starts an embedded server)")
    if bool(env_str(env, "FLEETWARD_POLICY_TLS_CERT")) != bool(
        env_str(env, "FLEETWARD_POLICY_TLS_KEY")
    ):
        raise SettingsError("set both FLEETWARD_POLICY_TLS_CERT and FLEETWARD_POLICY_TLS_KEY")
    check_secrets(
        env_str(env, "FLEETWARD_JWT_SECRET"), env_str(env, "FLEETWARD_SERVICE_JWT_SECRET")
    )
    return database_url


def _token_limits(env: Mapping[str, str]) -> tuple[int, int]:
    """The longest token lifetime (seconds) and the recorded denials per minute."""
    max_ttl = env_int(env, "FLEETWARD_JWT_MAX_TTL", DEFAULT_MAX_TTL_S)
    denials = env_int(env, "FLEETWARD_DENIALS_PER_MINUTE", 30)
    if denials < 1:
        raise SettingsError(f"FLEETWARD_DENIALS_PER_MINUTE must be at least 1, got {denials}")
    if max_ttl <= 0:
        raise SettingsError(f"FLEETWARD_JWT_MAX_TTL must be positive seconds, got {max_ttl}")
    return max_ttl, denials


def _checkpoint_paths(env: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """The checkpoint directory and signing key file: both set, or neither."""
    checkpoint_dir = env_path(env, "FLEETWARD_CHECKPOINT_DIR")
    checkpoint_key = env_path(env, "FLEETWARD_CHECKPOINT_KEY_FILE")
    if (checkpoint_dir is None) != (checkpoint_key is None):
        raise SettingsError(
            "set both FLEETWARD_CHECKPOINT_DIR and FLEETWARD_CHECKPOINT_KEY_FILE (or neither)"
        )
    return checkpoint_dir, checkpoint_key


def _env_positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = env_int(env, name, default)
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, got {value}")
    return value


def _env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value
