"""Reading FLEETWARD_* environment variables into typed values (docs/architecture.md §9)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from services.common.server import TlsConfig


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


def env_str(env: Mapping[str, str], name: str, default: str = "") -> str:
    """The variable's value, or ``default`` when unset or empty."""
    return env.get(name) or default


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """An integer variable."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def env_path(env: Mapping[str, str], name: str) -> Path | None:
    """A path variable, or None when unset."""
    raw = env.get(name)
    return Path(raw) if raw else None


def tls_from_env(env: Mapping[str, str]) -> TlsConfig | None:
    """TLS settings from FLEETWARD_TLS_CERT/KEY/CLIENT_CA; None means plaintext."""
    cert, key = env_path(env, "FLEETWARD_TLS_CERT"), env_path(env, "FLEETWARD_TLS_KEY")
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SettingsError("set both FLEETWARD_TLS_CERT and FLEETWARD_TLS_KEY")
    return TlsConfig(cert, key, env_path(env, "FLEETWARD_TLS_CLIENT_CA"))


def process_env() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ
