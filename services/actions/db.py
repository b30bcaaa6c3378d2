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
