"""``migrate``: forward-only files applied in order, once, under an advisory lock."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import asyncpg
import pytest

from services.actions.migrate import (
    MIGRATION_LOCK_KEY,
    MigrationError,
    load_migrations,
    migrate,
)
from tests.foundation.conftest import PYTHON, REPO, clean_env

_WAITING_FOR_LOCK = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


async def _applied(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")
        return [r["name"] for r in rows]
    finally:
        await conn.close()


async def _table_exists(dsn: str, table: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        found: bool = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        return found
    finally:
        await conn.close()


async def test_migrations_apply_on_an_empty_database(empty_database: str) -> None:
    expected = [m.name for m in load_migrations()]
    assert expected[0] == "0001_initial_schema.sql"

    assert await migrate(empty_database) == expected

    assert await _applied(empty_database) == expected
    for table in ("workspaces", "agents", "action_audit_log", "action_events"):
        assert await _table_exists(empty_database, table), table


async def test_migrate_twice_is_a_no_op(empty_database: str) -> None:
    await migrate(empty_database)

    assert await migrate(empty_database) == []
    assert await _applied(empty_database) == [m.name for m in load_migrations()]


async def test_concurrent_migrate_processes_apply_each_file_exactly_once(
    empty_database: str,
) -> None:
    # The test holds the migration lock while both processes start, so both are certainly
    # waiting on it at the same time when it is released.
    holder = await asyncpg.connect(empty_database)
    env = clean_env({"DATABASE_URL": empty_database})
    procs: list[asyncio.subprocess.Process] = []
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        for _ in range(2):
            procs.append(
                await asyncio.create_subprocess_exec(
                    PYTHON,
                    "-m",
                    "services.actions",
                    "migrate",
                    cwd=REPO,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        deadline = time.monotonic() + 60
        while await holder.fetchval(_WAITING_FOR_LOCK) < 2:
            assert time.monotonic() < deadline, "the migrate processes never reached the lock"
            assert all(p.returncode is None for p in procs), "a migrate process exited early"
            await asyncio.sleep(0.05)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        outputs = [await p.communicate() for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        await holder.close()

    assert [p.returncode for p in procs] == [0, 0], [err.decode() for _, err in outputs]
    expected = [m.name for m in load_migrations()]
    reports = sorted(out.decode().splitlines()[0] for out, _ in outputs)
    assert reports == ["applied 0 migration(s)", f"applied {len(expected)} migration(s)"]
    assert await _applied(empty_database) == expected


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_an_edited_applied_migration_is_refused(empty_database: str, tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"0001_first.sql": "CREATE TABLE first_t (id int);"})
    assert await migrate(empty_database, folder) == ["0001_first.sql"]
    _write(
        folder,
        {
            "0001_first.sql": "CREATE TABLE first_t (id bigint);",
            "0002_second.sql": "CREATE TABLE second_t (id int);",
        },
    )

    with pytest.raises(
        MigrationError, match=re.escape("0001_first.sql was changed after it was applied")
    ):
        await migrate(empty_database, folder)
    assert not await _table_exists(empty_database, "second_t")
    assert await _applied(empty_database) == ["0001_first.sql"]


@pytest.mark.parametrize(
    "name", ["1_init.sql", "0001-init.sql", "0001_Init.sql", "00001_init.sql", "0001_.sql"]
)
def test_a_malformed_migration_file_name_is_refused(tmp_path: Path, name: str) -> None:
    folder = _write(tmp_path / "m", {"0001_ok.sql": "SELECT 1;", name: "SELECT 1;"})

    with pytest.raises(
        MigrationError, match=re.escape(f"{name}: migration files are named NNNN_name.sql")
    ):
        load_migrations(folder)


async def test_a_malformed_name_applies_nothing(empty_database: str, tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m", {"0001_ok.sql": "CREATE TABLE ok_t (id int);", "2_bad.sql": "SELECT 1;"}
    )

    with pytest.raises(MigrationError):
        await migrate(empty_database, folder)
    assert not await _table_exists(empty_database, "ok_t")


def test_two_migrations_with_one_version_are_refused(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"})

    with pytest.raises(MigrationError, match="version 0001 is used twice"):
        load_migrations(folder)


async def test_a_failing_migration_leaves_no_trace_and_releases_the_lock(
    empty_database: str, tmp_path: Path
) -> None:
    folder = _write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE ok_t (id int);",
            "0002_broken.sql": "CREATE TABLE broken_t (id int); SELECT 1 / 0;",
        },
    )

    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(empty_database, folder)
    assert await _applied(empty_database) == ["0001_ok.sql"]
    assert not await _table_exists(empty_database, "broken_t")

    _write(folder, {"0002_broken.sql": "CREATE TABLE broken_t (id int);"})
    assert await migrate(empty_database, folder) == ["0002_broken.sql"]


def test_migrations_are_applied_in_version_order(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m",
        {"0010_c.sql": "SELECT 1;", "0002_b.sql": "SELECT 1;", "0001_a.sql": "SELECT 1;"},
    )

    assert [m.name for m in load_migrations(folder)] == ["0001_a.sql", "0002_b.sql", "0010_c.sql"]
