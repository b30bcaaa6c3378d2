"""The admin commands off the happy path: an empty database, a new workspace, --help."""

from __future__ import annotations

import subprocess
import uuid

import asyncpg

from tests.foundation.conftest import PYTHON, REPO, clean_env


def actions_cli(*args: str, dsn: str = "") -> subprocess.CompletedProcess[str]:
    env = clean_env({"DATABASE_URL": dsn} if dsn else {})
    return subprocess.run(
        [PYTHON, "-m", "services.actions", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_audit_verify_on_a_database_without_our_schema_says_so_and_exits_2(
    empty_database: str,
) -> None:
    proc = actions_cli("audit", "verify", dsn=empty_database)
    assert proc.returncode == 2  # 1 means "a chain is broken"
    assert proc.stderr.strip() == "no Fleetward schema here (run migrate?)"
    assert "Traceback" not in proc.stderr


async def test_create_workspace_creates_one_and_refuses_a_clash(
    database_dsn: str, pool: asyncpg.Pool
) -> None:
    wanted = uuid.uuid4()
    name = f"own-fleet-{wanted.hex[:8]}"
    made = actions_cli("create-workspace", name, "--id", str(wanted), dsn=database_dsn)
    assert made.returncode == 0, made.stderr
    assert f"created workspace {name!r}: {wanted}" in made.stdout
    assert f"import-agents FILE.csv --workspace {wanted}" in made.stdout
    assert f"g, alice, admin, {wanted}" in made.stdout
    assert await pool.fetchval("SELECT name FROM workspaces WHERE id = $1", wanted) == name

    again = actions_cli("create-workspace", name, dsn=database_dsn)
    assert again.returncode == 1
    assert f"workspace {wanted} named {name!r} already exists" in again.stderr
    for bad in (["  padded  "], ["x" * 201], ["ok", "--id", "not-a-uuid"], ["tab\there"]):
        refused = actions_cli("create-workspace", *bad, dsn=database_dsn)
        assert refused.returncode == 2, bad
        assert "Traceback" not in refused.stderr


def test_import_agents_help_shows_the_file_format() -> None:
    proc = actions_cli("import-agents", "--help")
    assert proc.returncode == 0
    assert "workspace_id,department_id,agent_id[,department_name]" in proc.stdout
    assert "with --workspace ID the workspace_id column is left out" in proc.stdout
