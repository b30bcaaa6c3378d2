"""The migrated session database has the tables of docs/architecture.md §6."""

from __future__ import annotations

import asyncpg

from tests.conftest import NewWorkspace

TABLES = {
    "workspaces",
    "departments",
    "agents",
    "budgets",
    "action_audit_log",
    "action_targets",
    "action_events",
    "audit_chain_heads",
    "schema_migrations",
}


async def test_session_database_has_every_table(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert {r["table_name"] for r in rows} >= TABLES


async def test_new_workspace_gets_its_chain_head(
    pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    head = await pool.fetchrow("SELECT * FROM audit_chain_heads WHERE workspace_id = $1", ws.id)
    assert head is not None
    assert head["last_seq"] == 0
    assert head["last_hash"] == "0" * 64
