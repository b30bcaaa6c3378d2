"""Dev secrets: generated once into ``.data/dev-secrets.json`` when the env leaves them unset."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import MutableMapping
from pathlib import Path

DATA_DIR = Path(".data")
_FILE = "dev-secrets.json"
_VARS = ("FLEETWARD_JWT_SECRET", "FLEETWARD_SERVICE_JWT_SECRET")
# The password of the dev setup's database roles (services/dev/roles.py); not a variable.
DATABASE_PASSWORD = "database_password"  # noqa: S105 - a key of the file, not a secret


def load_or_create(data_dir: Path = DATA_DIR) -> dict[str, str]:
    """Return the dev secrets, creating the missing ones (file mode 0600) on first use."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / _FILE
    stored: dict[str, str] = {}
    if path.exists():
        path.chmod(0o600)  # also when an older setup (or a copy) left it readable by others
        stored = json.loads(path.read_text())
    missing = [k for k in (*_VARS, DATABASE_PASSWORD) if not stored.get(k)]
    if not missing:
        return stored
    stored.update({k: secrets.token_urlsafe(48) for k in missing})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(stored, fh, indent=2)
    return stored


def database_password(data_dir: Path = DATA_DIR) -> str:
    """The dev setup's password for its database roles: FLEETWARD_DEV_DATABASE_PASSWORD,
    else generated once into the dev secrets file."""
    return (
        os.environ.get("FLEETWARD_DEV_DATABASE_PASSWORD")
        or load_or_create(data_dir)[DATABASE_PASSWORD]
    )


def apply_to_env(env: MutableMapping[str, str], data_dir: Path = DATA_DIR) -> None:
    """Fill the secret variables that ``env`` leaves unset from the dev secrets."""
    if all(env.get(v) for v in _VARS):
        return
    dev = load_or_create(data_dir)
    for var in _VARS:
        if not env.get(var) and not (
            var == "FLEETWARD_JWT_SECRET" and env.get("FLEETWARD_JWT_JWKS_FILE")
        ):
            env[var] = dev[var]
