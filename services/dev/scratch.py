"""Scratch databases for the tests and the bench: created on a server, dropped afterwards.

The one helper both use (tests/conftest.py for a session's database and a test's empty
one, bench/procs.py for each bench run).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg

from services.dev import roles


@contextlib.asynccontextmanager
async def scratch_database(
    server_dsn: str, prefix: str, *, owner: str | None = roles.OWNER
) -> AsyncIterator[str]:
    """A new database named ``<prefix>_<random>`` on the server of ``server_dsn``, owned by
    ``owner`` (None: the administrator); its DSN as the administrator. Dropped at the end,
    even with sessions still open (``WITH (FORCE)``).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    dsn = await roles.create_database(server_dsn, name, owner=owner)
    try:
        yield dsn
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
