"""``seed-demo``: the demo workspace "acme", its departments and agents.

See docs/architecture.md §1.
"""

from __future__ import annotations

import uuid

import asyncpg

from services.actions import store

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


async def seed_demo(dsn: str) -> uuid.UUID:
    """Create or refresh the demo workspace; idempotent. Returns its id."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # Existing agents keep their control state: seeding twice changes nothing.
            await store.inventory.seed(
                conn, DEMO_WORKSPACE_ID, DEMO_WORKSPACE_NAME, DEMO_DEPARTMENTS, DEMO_AGENTS
            )
    finally:
        await conn.close()
    return DEMO_WORKSPACE_ID
