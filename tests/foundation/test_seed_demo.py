"""``python -m services.actions seed-demo``: the demo workspace acme (docs/architecture.md §1)."""

from __future__ import annotations

import subprocess
import uuid

import asyncpg

from services.actions.demo import DEMO_WORKSPACE_ID
from tests.foundation.conftest import PYTHON, REPO, clean_env

ACME = uuid.UUID("ac3e0000-0000-4000-8000-000000000001")


def _seed(dsn: str) -> str:
    proc = subprocess.run(
        [PYTHON, "-m", "services.actions", "seed-demo"],
        cwd=REPO,
        env=clean_env({"DATABASE_URL": dsn}),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def _snapshot(pool: asyncpg.Pool) -> tuple[list[asyncpg.Record], ...]:
    return (
        await pool.fetch("SELECT id, name FROM workspaces WHERE id = $1", ACME),
        await pool.fetch(
            "SELECT department_id, name FROM departments WHERE workspace_id = $1 "
            "ORDER BY department_id",
            ACME,
        ),
        await pool.fetch(
            "SELECT * FROM agents WHERE workspace_id = $1 ORDER BY agent_id",
            ACME,
        ),
    )


async def test_seed_demo_creates_acme_with_its_constant_id(
    isolated_pool: asyncpg.Pool, isolated_dsn: str
) -> None:
    assert DEMO_WORKSPACE_ID == ACME

    assert str(ACME) in _seed(isolated_dsn)

    workspaces, departments, agents = await _snapshot(isolated_pool)
    assert [(w["id"], w["name"]) for w in workspaces] == [(ACME, "acme")]
    assert [d["department_id"] for d in departments] == ["engineering", "support"]
    assert len(agents) >= 8
    by_department = {
        d: [a["agent_id"] for a in agents if a["department_id"] == d]
        for d in ("engineering", "support")
    }
    assert "eng-code-1" in by_department["engineering"]
    assert "sup-chat-1" in by_department["support"]
    head = await isolated_pool.fetchrow(
        "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1", ACME
    )
    assert head is not None
    assert head["last_seq"] == 0


async def test_seed_demo_twice_changes_nothing(
    isolated_pool: asyncpg.Pool, isolated_dsn: str
) -> None:
    _seed(isolated_dsn)
    before = await _snapshot(isolated_pool)

    _seed(isolated_dsn)

    assert await _snapshot(isolated_pool) == before


async def test_seed_demo_keeps_the_control_state_of_existing_agents(
    isolated_pool: asyncpg.Pool, isolated_dsn: str
) -> None:
    _seed(isolated_dsn)
    await isolated_pool.execute(
        "UPDATE agents SET status = 'paused', paused_until = now() + interval '1 hour', "
        "generation = 7 WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ACME,
    )

    _seed(isolated_dsn)

    agent = await isolated_pool.fetchrow(
        "SELECT status, paused_until, generation FROM agents "
        "WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ACME,
    )
    assert agent is not None
    assert (agent["status"], agent["generation"]) == ("paused", 7)
    assert agent["paused_until"] is not None
