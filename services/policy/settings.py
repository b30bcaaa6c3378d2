"""Frozen settings of the policy service, from FLEETWARD_* variables (ARCHITECTURE §9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.server import TlsConfig
from services.common.settings import env_int, env_str, process_env, tls_from_env


@dataclass(frozen=True)
class PolicySettings:
    """Everything the policy service reads from its environment."""

    listen_addr: str = "127.0.0.1:50052"
    policy_dir: Path = Path("policies")
    service_jwt_secret: str = ""
    tls: TlsConfig | None = None
    metrics_port: int = 9465
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PolicySettings:
        """Read and check the environment."""
        env = process_env() if env is None else env
        return cls(
            listen_addr=env_str(env, "FLEETWARD_POLICY_ADDR", "127.0.0.1:50052"),
            policy_dir=Path(env_str(env, "FLEETWARD_POLICY_DIR", "policies")),
            service_jwt_secret=env_str(env, "FLEETWARD_SERVICE_JWT_SECRET"),
            tls=tls_from_env(env),
            metrics_port=env_int(env, "FLEETWARD_METRICS_PORT", 9465),
            log_level=env_str(env, "FLEETWARD_LOG_LEVEL", "INFO"),
        )
