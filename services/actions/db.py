"""Database types and connection setup shared by the action service's modules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import Pool, PoolAcquireContext, PoolConnectionProxy

# A connection as asyncpg.connect or pool.acquire hands it out.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
# An audit or agent row: a Record from the database or a dict (validate_only previews).
Row: TypeAlias = "asyncpg.Record | Mapping[str, Any]"

T = TypeVar("T")

# Failures to reach PostgreSQL, as asyncpg and the OS report them.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # Class 53: too many connections, out of memory, disk full.
    asyncpg.exceptions.InsufficientResourcesError,
)


def unavailable_detail(exc: BaseException) -> str:
    """What a caller is told about a database failure: its kind, not its class or text
    (those name the driver and its version; the log keeps them).
    """
    if isinstance(exc, TimeoutError):
        return "no connection or no answer in time; retry"
    if isinstance(exc, asyncpg.exceptions.InsufficientResourcesError):
        return "the database is out of connections or resources; retry"
    return "the database cannot be reached; retry"


async def init_connection(conn: Conn) -> None:
    """Jsonb columns as Python objects."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# A read of one consistent moment, however much is written meanwhile (the verifier's).
SNAPSHOT: dict[str, Any] = {"isolation": "repeatable_read", "readonly": True}
BATCH = 5000


async def batches(conn: Conn, query: str, *args: Any) -> AsyncIterator[list[asyncpg.Record]]:
    """A server-side cursor's rows, :data:`BATCH` at a time (one await per batch, not per
    row: on a long chain the per-row awaits cost a fifth of the time).
    """
    cursor = await conn.cursor(query, *args)
    while batch := await cursor.fetch(BATCH):
        yield batch


def one(row: T | None, what: str) -> T:
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
    terminated (``lifecycle.two_step._unlock``), and LISTEN has its own connection. A connection
    released inside a transaction (an error mid-way) still gets the full reset.
    """
    if conn.is_in_transaction():
        await conn.reset()


class BoundedPool(Pool):
    """An asyncpg pool whose waits for a connection end after ``acquire_timeout_s``.

    asyncpg's own ``acquire()`` (and so ``pool.fetch``) waits forever by default: a burst
    of requests would queue behind a busy pool without bound. Here the wait raises
    ``TimeoutError``, which the servicer answers UNAVAILABLE ``DATABASE_UNAVAILABLE``.
    """

    def __init__(self, *args: Any, acquire_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        """A connection, waiting at most ``timeout`` (default: the pool's) for one."""
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)


async def create_pool(dsn: str, *, max_size: int, acquire_timeout_s: float) -> asyncpg.Pool:
    """A :class:`BoundedPool` with Fleetward's connection setup.

    ``min_size=0``: the service starts (and answers DATABASE_UNAVAILABLE) while
    PostgreSQL is down.
    """
    pool = BoundedPool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=0,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        init=init_connection,
        reset=reset_connection,
        acquire_timeout_s=acquire_timeout_s,
    )
    await pool
    return pool
