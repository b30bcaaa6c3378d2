"""The examples run against the real action service and do what their docstrings say."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from fleetward.client import AsyncActionsClient, ClientConfig, PauseAgent

from tests.conftest import NewWorkspace, Secrets

EXAMPLES = Path(__file__).resolve().parents[2] / "clients" / "python" / "examples"


def _env(target: str, token: str, workspace: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWARD_")}
    return {
        **clean,
        "FLEETWARD_TARGET": target,
        "FLEETWARD_TOKEN": token,
        "FLEETWARD_WORKSPACE": workspace,
    }


async def test_async_backend_pauses_an_agent(
    client_action_target: str, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    env = _env(client_action_target, dev_secrets.user_token("bob"), str(ws.id))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "async_backend.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    action_id, status = out.decode().split()
    assert status == "ACTION_STATUS_COMPLETED"
    async with AsyncActionsClient(
        ClientConfig(target=client_action_target, token=dev_secrets.user_token("carol"))
    ) as client:
        agent = await client.get_agent(workspace_id=str(ws.id), agent_id="eng-code-1")
    assert agent.last_action_id == action_id


async def test_cache_invalidation_watcher_refreshes_touched_agents(
    client_action_target: str, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    env = _env(client_action_target, dev_secrets.user_token("carol"), str(ws.id))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "cache_invalidation_watcher.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        async with AsyncActionsClient(
            ClientConfig(target=client_action_target, token=dev_secrets.user_token("bob"))
        ) as client:
            await client.execute(
                workspace_id=str(ws.id),
                scope="department",
                target_id="support",
                reason="invalidate the cache",
                params=PauseAgent(),
            )
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
    finally:
        proc.kill()
        await proc.wait()
    assert "action.completed" in line.decode()
    assert str(ws.agents_in("support")) in line.decode()
