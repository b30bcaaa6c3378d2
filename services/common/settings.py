"""Reading environment variables into typed values (every variable: docs/configuration.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from services.common.server import ServerTls


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


def tls_from_env(env: Mapping[str, str]) -> ServerTls | None:
    """TLS settings from FLEETWARD_TLS_CERT/KEY/CLIENT_CA; None means plaintext."""
    cert, key = env_path(env, "FLEETWARD_TLS_CERT"), env_path(env, "FLEETWARD_TLS_KEY")
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SettingsError("set both FLEETWARD_TLS_CERT and FLEETWARD_TLS_KEY")
    return ServerTls(cert, key, env_path(env, "FLEETWARD_TLS_CLIENT_CA"))


MIN_SECRET_BYTES = 32


def check_secrets(user_secret: str | None, service_secret: str | None) -> None:
    """Refuse to start with a guessable secret, or one secret serving as both.

    A user-token secret equal to the service-token secret would let whoever mints user
    tokens mint service identities too, which is exactly what keeping them apart prevents.
    """
    for name, value in (
        ("FLEETWARD_JWT_SECRET", user_secret),
        ("FLEETWARD_SERVICE_JWT_SECRET", service_secret),
    ):
        if value and len(value.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"{name} must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)"
            )
    if user_secret and service_secret and user_secret == service_secret:
        raise SettingsError(
            "FLEETWARD_JWT_SECRET and FLEETWARD_SERVICE_JWT_SECRET must differ: "
            "the user-token key must not be able to mint service tokens"
        )


def env_list(env: Mapping[str, str], name: str, default: str) -> frozenset[str]:
    """A comma-separated variable as a set of its non-empty items."""
    return frozenset(
        item.strip() for item in env_str(env, name, default).split(",") if item.strip()
    )


def process_env() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ
