"""Keep a local cache of agent state fresh by watching the workspace's action events.

The watcher remembers the last ``seq`` it processed; ``watch_actions`` replays from there
and reconnects on its own when the service restarts, so no change is missed or repeated.

    export FLEETWARD_TOKEN=$(make token SUB=carol)
    python clients/python/examples/cache_invalidation_watcher.py
"""

from __future__ import annotations

import asyncio
import os

from fleetward.actions.v1 import actions_pb2
from fleetward.client import AsyncActionsClient, ClientConfig, FleetwardError, action_result

WORKSPACE = os.environ.get("FLEETWARD_WORKSPACE", "ac3e0000-0000-4000-8000-000000000001")


class AgentCache:
    """agent_id -> Agent, refreshed whenever a completed action touched the agent."""

    def __init__(self, client: AsyncActionsClient) -> None:
        """An empty cache that reads through ``client``."""
        self.client = client
        self.agents: dict[str, actions_pb2.Agent] = {}
        self.last_seq = 0  # persist this to resume after a restart of the watcher

    async def load(self) -> None:
        """Fill the cache from ListAgents."""
        async for agent in self.client.list_agents(workspace_id=WORKSPACE):
            self.agents[agent.agent_id] = agent

    async def invalidate(self, event: actions_pb2.ActionEvent) -> None:
        """Re-read the agents an event changed."""
        if event.event_type in ("action.completed", "action.rolled_back"):
            touched = [change.agent_id for change in action_result(event.action).agents]
            for agent_id in touched:
                self.agents[agent_id] = await self.client.get_agent(
                    workspace_id=WORKSPACE, agent_id=agent_id
                )
            print(f"seq {event.seq}: {event.event_type}, refreshed {touched}", flush=True)
        self.last_seq = event.seq

    async def run(self) -> None:
        """Load, then follow the event stream forever."""
        await self.load()
        async for event in self.client.watch_actions(
            workspace_id=WORKSPACE, after_seq=self.last_seq
        ):
            await self.invalidate(event)


async def main() -> None:
    """Run the watcher until interrupted."""
    async with AsyncActionsClient(ClientConfig.from_env()) as client:
        try:
            await AgentCache(client).run()
        except FleetwardError as error:
            print(f"watch stopped: {error}")


if __name__ == "__main__":
    asyncio.run(main())
