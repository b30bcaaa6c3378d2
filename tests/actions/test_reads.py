"""Reads: GetAction, ListActions (filters, keyset pages), ListActionTypes, GetAgent, ListAgents."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions import catalog
from tests.actions.helpers import STATUS, Api, details
from tests.conftest import NewWorkspace


async def test_list_action_types_is_the_catalog(api: Api) -> None:
    reply = await api.stub.ListActionTypes(
        actions_pb2.ListActionTypesRequest(), metadata=api.auth("nobody-in-particular")
    )
    by_name = {t.name: t for t in reply.action_types}
    assert (
        set(by_name)
        == set(catalog.registry())
        == {
            "pause_agent",
            "resume_agent",
            "set_budget",
            "restart_agent",
        }
    )
    assert by_name["restart_agent"].allowed_scopes == [actions_pb2.SCOPE_AGENT]
    assert not by_name["restart_agent"].can_rollback
    assert by_name["pause_agent"].required_permission == "actions:pause_agent"
    assert by_name["set_budget"].params_message == "fleetward.actions.v1.SetBudgetParams"


async def test_list_actions_pages_newest_first_with_filters(
    api: Api, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    made: list[actions_pb2.Action] = []
    for i in range(7):
        agent = f"eng-code-{1 + i % 3}"
        action = "pause_agent" if i % 2 == 0 else "resume_agent"
        if action == "resume_agent":
            made.append(await api.execute("bob", ws.id, action, target=made[-1].target_id))
        else:
            made.append(await api.execute("bob", ws.id, action, target=agent))
    seen: list[str] = []
    token = ""
    while True:
        page = await api.stub.ListActions(
            actions_pb2.ListActionsRequest(workspace_id=str(ws.id), page_size=3, page_token=token),
            metadata=api.auth("carol"),
        )
        seen.extend(a.action_id for a in page.actions)
        token = page.next_page_token
        if not token:
            break
    assert seen == [a.action_id for a in reversed(made)]

    pauses = await api.stub.ListActions(
        actions_pb2.ListActionsRequest(
            workspace_id=str(ws.id),
            action_type="pause_agent",
            status=actions_pb2.ACTION_STATUS_COMPLETED,
            actor_subject="bob",
        ),
        metadata=api.auth("carol"),
    )
    assert [a.action_id for a in pauses.actions] == [
        a.action_id for a in reversed(made) if a.action_type == "pause_agent"
    ]
    first_page = await api.stub.ListActions(
        actions_pb2.ListActionsRequest(workspace_id=str(ws.id), page_size=2),
        metadata=api.auth("carol"),
    )
    # A token is bound to its workspace and filters.
    for other in (
        actions_pb2.ListActionsRequest(
            workspace_id=str(ws.id),
            action_type="pause_agent",
            page_token=first_page.next_page_token,
        ),
        actions_pb2.ListActionsRequest(workspace_id=str(ws.id), page_token="garbage!"),
        actions_pb2.ListActionsRequest(workspace_id=str(ws.id), page_size=501),
        actions_pb2.ListActionsRequest(workspace_id=str(ws.id), action_type="drop_tables"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.stub.ListActions(other, metadata=api.auth("carol"))
        assert details(err.value).code == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_action_and_unknown_ids(api: Api, new_workspace: NewWorkspace) -> None:
    ws = await new_workspace()
    done = await api.execute("bob", ws.id, "pause_agent", target="sup-chat-1")
    got = await api.stub.GetAction(
        actions_pb2.GetActionRequest(workspace_id=str(ws.id), action_id=done.action_id),
        metadata=api.auth("carol"),
    )
    assert got == done
    assert got.status == STATUS.ACTION_STATUS_COMPLETED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.GetAction(
            actions_pb2.GetActionRequest(workspace_id=str(ws.id), action_id=str(uuid.uuid4())),
            metadata=api.auth("carol"),
        )
    assert details(err.value).reason == "NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.GetAction(
            actions_pb2.GetActionRequest(workspace_id=str(ws.id), action_id=done.action_id),
            metadata=api.auth("mallory"),
        )
    assert details(err.value).code == grpc.StatusCode.PERMISSION_DENIED


async def test_agents_show_their_control_state(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=4)
    pause = await api.execute("bob", ws.id, "pause_agent", target="sup-chat-2", indefinite=True)
    agent = await api.stub.GetAgent(
        actions_pb2.GetAgentRequest(workspace_id=str(ws.id), agent_id="sup-chat-2"),
        metadata=api.auth("carol"),
    )
    assert agent.status == actions_pb2.AGENT_STATUS_PAUSED
    assert agent.last_action_id == pause.action_id
    assert agent.department_id == "support"
    assert not agent.HasField("paused_until")
    names: list[str] = []
    token = ""
    while True:
        page = await api.stub.ListAgents(
            actions_pb2.ListAgentsRequest(
                workspace_id=str(ws.id), department_id="support", page_size=3, page_token=token
            ),
            metadata=api.auth("carol"),
        )
        names.extend(a.agent_id for a in page.agents)
        token = page.next_page_token
        if not token:
            break
    assert names == ws.agents_in("support")
    paused = await api.stub.ListAgents(
        actions_pb2.ListAgentsRequest(
            workspace_id=str(ws.id), status=actions_pb2.AGENT_STATUS_PAUSED
        ),
        metadata=api.auth("carol"),
    )
    assert [a.agent_id for a in paused.agents] == ["sup-chat-2"]
    for bad in ("../x", "Upper"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.stub.GetAgent(
                actions_pb2.GetAgentRequest(workspace_id=str(ws.id), agent_id=bad),
                metadata=api.auth("carol"),
            )
        assert "agent_id" in details(err.value).field_violations
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.GetAgent(
            actions_pb2.GetAgentRequest(workspace_id=str(ws.id), agent_id="ghost"),
            metadata=api.auth("carol"),
        )
    assert details(err.value).code == grpc.StatusCode.NOT_FOUND


async def test_list_actions_time_window(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    first = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    second = await api.execute("bob", ws.id, "pause_agent", target="eng-code-2")
    window = actions_pb2.ListActionsRequest(workspace_id=str(ws.id))
    window.created_after.CopyFrom(second.created_at)
    page = await api.stub.ListActions(window, metadata=api.auth("carol"))
    assert [a.action_id for a in page.actions] == [second.action_id]
    window = actions_pb2.ListActionsRequest(workspace_id=str(ws.id), target_id="eng-code-1")
    window.created_before.CopyFrom(second.created_at)
    page = await api.stub.ListActions(window, metadata=api.auth("carol"))
    assert [a.action_id for a in page.actions] == [first.action_id]


async def test_page_tokens_survive_concurrent_inserts(
    api: Api, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    old = [await api.execute("bob", ws.id, "pause_agent", target="eng-code-1") for _ in range(4)]
    first = await api.stub.ListActions(
        actions_pb2.ListActionsRequest(workspace_id=str(ws.id), page_size=2),
        metadata=api.auth("carol"),
    )
    await api.execute("bob", ws.id, "pause_agent", target="eng-code-2")  # newer than the cursor
    second = await api.stub.ListActions(
        actions_pb2.ListActionsRequest(
            workspace_id=str(ws.id), page_size=2, page_token=first.next_page_token
        ),
        metadata=api.auth("carol"),
    )
    seen = [a.action_id for a in [*first.actions, *second.actions]]
    assert seen == [a.action_id for a in reversed(old)]
    assert second.next_page_token == ""
