"""Forward-only migrations: apply ``migrations/NNNN_name.sql`` in order, under an advisory lock.

The files ship inside the ``services`` package (``services/migrations`` is a link to the
top-level ``migrations/`` in the source tree, and the wheel carries the files themselves),
so an installed service migrates without a checkout; they are read with
:mod:`importlib.resources`.

Safe to run twice (applied files are skipped) and from several processes at once (the
lock serialises them; the second finds nothing to do). An applied file whose content
changed is refused: migrations are never edited after they ship.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

MIGRATIONS_DIR: Traversable = resources.files("services") / "migrations"
# pg_advisory_lock key: the first 8 bytes of sha256("fleetward.migrate") as a signed bigint.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"fleetward.migrate").digest()[:8], "big", signed=True
)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""
_APPLIED = "SELECT version, checksum FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


class MigrationError(RuntimeError):
    """The migrations folder or the database's record of it is inconsistent."""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Traversable = MIGRATIONS_DIR) -> list[Migration]:
    """Read the migration files in version order; refuse malformed or duplicate names."""
    found: dict[str, Migration] = {}
    files = (entry for entry in directory.iterdir() if entry.name.endswith(".sql"))
    for path in sorted(files, key=lambda entry: entry.name):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = match.group(1)
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(dsn: str, directory: Traversable = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names of those applied by this call."""
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            applied = {r["version"]: r["checksum"] for r in await conn.fetch(_APPLIED)}
            done: list[str] = []
            for m in migrations:
                if m.version in applied:
                    if applied[m.version] != m.checksum:
                        raise MigrationError(
                            f"{m.name} was changed after it was applied; add a new migration"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(_RECORD, m.version, m.name, m.checksum)
                done.append(m.name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
