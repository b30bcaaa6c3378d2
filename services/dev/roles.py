"""The two database roles of the dev setup and the tests (docs/DECISIONS.md "Two database roles").

``migrate`` runs as an owner role that owns the schema; the services connect as a login
role that is a member of ``fleetward_runtime``, the group role migration 0005 grants
exactly what the services need. Given an administrator's DSN (the embedded server's
superuser, or the ``DATABASE_URL`` a developer set), :func:`ensure_roles` creates the
roles and :func:`split` returns the DSNs for both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

OWNER = "fleetward_owner"
RUNTIME_GROUP = "fleetward_runtime"
RUNTIME_LOGIN = "fleetward_app"
# The embedded server's database of the dev setup, owned by OWNER.
DEV_DATABASE = "fleetward"


@dataclass(frozen=True)
class Split:
    """The DSN ``migrate`` uses (the owner's) and the one the services use (runtime)."""

    migrate_dsn: str
    runtime_dsn: str


def with_database(dsn: str, database: str) -> str:
    """The same server and user, another database."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def with_user(dsn: str, user: str, password: str) -> str:
    """The same server and database, another user."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(
        parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}")
    )


@contextlib.asynccontextmanager
async def _connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def can_create_roles(admin_dsn: str) -> bool:
    """Whether the DSN's role may create roles (a superuser, or CREATEROLE)."""
    async with _connect(admin_dsn) as conn:
        return bool(
            await conn.fetchval(
                "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
            )
        )


async def ensure_roles(admin_dsn: str, password: str) -> None:
    """Create the owner, the runtime group and its login role (idempotent, concurrent-safe);
    the login roles get ``password`` (the dev setup's, so password authentication works)."""
    async with _connect(admin_dsn) as conn:
        for role, options in (
            (RUNTIME_GROUP, "NOLOGIN"),
            (OWNER, "LOGIN"),
            (RUNTIME_LOGIN, "LOGIN"),
        ):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                with contextlib.suppress(
                    asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError
                ):
                    await conn.execute(f"CREATE ROLE {role} {options}")
            if options == "LOGIN":
                # A literal: utility statements take no parameters (the password is ours).
                literal = password.replace("'", "''")
                await conn.execute(f"ALTER ROLE {role} PASSWORD '{literal}'")
        with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            await conn.execute(f"GRANT {RUNTIME_GROUP} TO {RUNTIME_LOGIN}")


async def create_database(
    admin_dsn: str, name: str, *, exist_ok: bool = False, owner: str | None = OWNER
) -> str:
    """Create database ``name`` owned by ``owner`` (None: the administrator); its DSN as
    the administrator."""
    owned_by = f" OWNER {owner}" if owner is not None else ""
    async with _connect(admin_dsn) as conn:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"{owned_by}')
            except asyncpg.DuplicateDatabaseError:
                if not exist_ok:
                    raise
        elif not exist_ok:
            raise asyncpg.DuplicateDatabaseError(f"database {name} exists")
    return with_database(admin_dsn, name)


def split(database_dsn: str, password: str, *, owner: str | None = OWNER) -> Split:
    """Both DSNs for a database: the owner's (``owner=None``: the DSN's own user) and the
    runtime login role's."""
    migrate_dsn = database_dsn if owner is None else with_user(database_dsn, owner, password)
    return Split(migrate_dsn, with_user(database_dsn, RUNTIME_LOGIN, password))
