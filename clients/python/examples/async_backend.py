"""Pause a runaway agent from an async backend (five lines of client code).

FLEETWARD_TOKEN=$(make token SUB=bob) python clients/python/examples/async_backend.py
"""

from __future__ import annotations

import asyncio
import os

from fleetward.actions.v1 import actions_pb2
from fleetward.client import AsyncActionsClient, ClientConfig, PauseAgent

WORKSPACE = os.environ.get("FLEETWARD_WORKSPACE", "ac3e0000-0000-4000-8000-000000000001")


async def main() -> None:
    """Pause eng-code-1 for 30 minutes and print the audited action."""
    config = ClientConfig.from_env()  # FLEETWARD_TARGET, FLEETWARD_TOKEN, FLEETWARD_TLS_CA
    async with AsyncActionsClient(config) as client:
        action = await client.execute(
            workspace_id=WORKSPACE,
            scope="agent",
            target_id="eng-code-1",
            reason="runaway spend",
            params=PauseAgent(duration_minutes=30),
        )
        print(action.action_id, actions_pb2.ActionStatus.Name(action.status))


if __name__ == "__main__":
    asyncio.run(main())
