"""``seed-demo``: the demo workspace "acme", its departments and agents.

See docs/architecture.md §1.
"""

from __future__ import annotations

import uuid

import asyncpg

DEMO_WORKSPACE_ID = uuid.UUID("ac3e0000-0000-4000-8000-000000000001")
DEMO_WORKSPACE_NAME = "acme"
DEMO_DEPARTMENTS = {"engineering": "Engineering", "support": "Support"}
DEMO_AGENTS = {
    "eng-code-1": "engineering",
    "eng-code-2": "engineering",
    "eng-code-3": "engineering",
    "eng-code-4": "engineering",
    "eng-review-1": "engineering",
    "sup-chat-1": "support",
    "sup-chat-2": "support",
    "sup-chat-3": "support",
    "sup-chat-4": "support",
    "sup-triage-1": "support",
}

_WORKSPACE = """
INSERT INTO workspaces (id, name) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name"""
_DEPARTMENTS = """
INSERT INTO departments (workspace_id, department_id, name)
SELECT $1, d.id, d.name FROM unnest($2::text[], $3::text[]) AS d(id, name)
ON CONFLICT (workspace_id, department_id) DO UPDATE SET name = EXCLUDED.name"""
# Existing agents keep their control state: seeding twice changes nothing.
_AGENTS = """
INSERT INTO agents (workspace_id, agent_id, department_id)
SELECT $1, a.id, a.dept FROM unnest($2::text[], $3::text[]) AS a(id, dept)
ON CONFLICT (workspace_id, agent_id) DO NOTHING"""


async def seed_demo(dsn: str) -> uuid.UUID:
    """Create or refresh the demo workspace; idempotent. Returns its id."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(_WORKSPACE, DEMO_WORKSPACE_ID, DEMO_WORKSPACE_NAME)
            await conn.execute(
                _DEPARTMENTS,
                DEMO_WORKSPACE_ID,
                list(DEMO_DEPARTMENTS),
                list(DEMO_DEPARTMENTS.values()),
            )
            await conn.execute(
                _AGENTS, DEMO_WORKSPACE_ID, list(DEMO_AGENTS), list(DEMO_AGENTS.values())
            )
    finally:
        await conn.close()
    return DEMO_WORKSPACE_ID
