"""Database types and connection setup shared by the action service's modules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection as asyncpg.connect or pool.acquire hands it out.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
# An audit or agent row: a Record from the database or a dict (validate_only previews).
Row: TypeAlias = "asyncpg.Record | Mapping[str, Any]"

# Failures to reach PostgreSQL, as asyncpg and the OS report them.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
)


async def init_connection(conn: Conn) -> None:
    """jsonb columns as Python objects."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def one(row: asyncpg.Record | None, what: str) -> asyncpg.Record:
    """The row a statement must return (a missing one is a bug, reported as INTERNAL)."""
    if row is None:
        raise RuntimeError(f"{what}: no row returned")
    return row


async def reset_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset on release, without asyncpg's default round trip.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release (a round trip per pooled statement). Nothing here leaves
    session state on a pooled connection: settings are transaction-local
    (``set_config(…, true)``), action locks are released explicitly or the connection is
    terminated (``lifecycle._unlock``), and LISTEN has its own connection. A connection
    released inside a transaction (an error mid-way) still gets the full reset.
    """
    if conn.is_in_transaction():
        await conn.reset()
