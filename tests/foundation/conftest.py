"""Foundation fixtures: a migrated database of this module's own, and subprocess helpers.

Tests that write rows no service would ever write (a bare ``pending`` action, an event
outside the hash chain, a paused demo agent) use ``isolated_pool``, so that services
running against the session database (recovery, the scheduler, ``audit verify``) never
see them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.actions.migrate import migrate
from services.dev import roles
from services.dev.processes import clean_env as clean_env
from services.dev.processes import free_port as free_port
from services.dev.scratch import scratch_database

# ``clean_env`` and ``free_port`` are the shared subprocess helpers (the bench's too):
# ``clean_env`` drops every FLEETWARD_* variable, DATABASE_URL and PYTHONPATH a test's
# subprocess could inherit from the developer's shell or from make.
REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


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
