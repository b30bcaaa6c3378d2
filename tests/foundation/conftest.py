"""Foundation fixtures: a migrated database of this module's own, and subprocess helpers.

Tests that write rows no service would ever write (a bare ``pending`` action, an event
outside the hash chain, a paused demo agent) use ``isolated_pool``, so that services
running against the session database (recovery, the scheduler, ``audit verify``) never
see them.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import asyncpg
import pytest

from services.actions.migrate import migrate
from services.dev import roles
from services.dev.scratch import scratch_database

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Variables a test's subprocess must not inherit from the developer's shell or from make.
FLEETWARD_VARS = (
    "DATABASE_URL",
    "FLEETWARD_MIGRATE_DATABASE_URL",
    "FLEETWARD_JWT_SECRET",
    "FLEETWARD_JWT_JWKS_FILE",
    "FLEETWARD_JWT_AUDIENCE",
    "FLEETWARD_SERVICE_JWT_SECRET",
    "FLEETWARD_TLS_CERT",
    "FLEETWARD_TLS_KEY",
    "FLEETWARD_TLS_CLIENT_CA",
    "FLEETWARD_CHECKPOINT_DIR",
    "FLEETWARD_CHECKPOINT_KEY_FILE",
    "FLEETWARD_DEV_DATABASE_PASSWORD",
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment without FLEETWARD settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in FLEETWARD_VARS}
    env.pop("PYTHONPATH", None)
    env.update(extra or {})
    return env


def free_port() -> int:
    """A TCP port that was free a moment ago (for servers started as subprocesses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def isolated_dsn(server_dsn: str, role_password: str) -> AsyncIterator[str]:
    """A database for this test module only, migrated by the owner role and dropped
    afterwards; its administrator DSN."""
    async with scratch_database(server_dsn, "fleetward_foundation") as dsn:
        await migrate(roles.split(dsn, role_password).migrate_dsn)
        yield dsn


@pytest.fixture(scope="module")
def isolated_runtime_dsn(isolated_dsn: str, role_password: str) -> str:
    """``isolated_dsn`` as the services' runtime role."""
    return roles.split(isolated_dsn, role_password).runtime_dsn


@pytest.fixture(scope="module")
async def isolated_pool(isolated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on ``isolated_dsn``."""
    p = await asyncpg.create_pool(isolated_dsn, min_size=1, max_size=4)
    assert p is not None
    yield p
    await p.close()
