"""validate_only: full validation and policy check, the exact planned changes, nothing written."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from tests.actions.helpers import Api, counts, details, result
from tests.conftest import NewWorkspace


async def test_execute_preview_shows_the_plan_and_writes_nothing(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    before = await counts(pool, ws.id)
    preview = await api.execute(
        "bob",
        ws.id,
        "pause_agent",
        scope="department",
        target="engineering",
        validate_only=True,
    )
    assert preview.action_id == ""
    assert preview.policy_version
    assert [
        (a["agent_id"], a["previous_status"], a["new_status"]) for a in result(preview)["agents"]
    ] == [
        ("eng-code-2", "active", "paused"),
        ("eng-code-3", "active", "paused"),
    ]
    budget = await api.execute(
        "dana", ws.id, "set_budget", scope="fleet", monthly_limit_cents=10, validate_only=True
    )
    assert result(budget)["budgets"][0]["new_monthly_limit_cents"] == 10
    # Still checked: validation and policy.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("carol", ws.id, "pause_agent", target="eng-code-2", validate_only=True)
    assert details(err.value).code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "pause_agent", reason="", validate_only=True)
    assert details(err.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert await counts(pool, ws.id) == before


async def test_rollback_preview_writes_nothing(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    dept = await api.execute("bob", ws.id, "pause_agent", scope="department", target="support")
    await api.execute("bob", ws.id, "resume_agent", target="sup-chat-1")
    before = await counts(pool, ws.id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.rollback("bob", ws.id, dept.action_id, validate_only=True)
    assert details(err.value).reason == "SUPERSEDED"
    preview = await api.rollback(
        "bob", ws.id, dept.action_id, validate_only=True, skip_superseded=True
    )
    assert {a["agent_id"] for a in result(preview)["agents"]} == {"sup-chat-2", "sup-chat-3"}
    assert all(a["new_status"] == "active" for a in result(preview)["agents"])
    assert len(result(preview)["skipped"]) == 1
    assert await counts(pool, ws.id) == before
