"""Both clients against the real action service: every method, paging, typed errors."""

from __future__ import annotations

import uuid

import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PauseAgent,
    PermissionDenied,
    RestartAgent,
    ResumeAgent,
    Scope,
    SetBudget,
    Unauthenticated,
)
from google.protobuf import json_format

from tests.client.conftest import Connect
from tests.client.servers import actions_client
from tests.conftest import NewWorkspace

COMPLETED = actions_pb2.ACTION_STATUS_COMPLETED


async def test_execute_pauses_and_reads_back(connect: Connect, new_workspace: NewWorkspace) -> None:
    ws = await new_workspace()
    bob = await connect("bob")
    action = await bob.call(
        "execute",
        workspace_id=str(ws.id),
        scope="agent",
        target_id="eng-code-1",
        reason="runaway spend",
        params=PauseAgent(duration_minutes=30),
    )
    assert action.status == COMPLETED
    assert action.action_type == "pause_agent"
    assert action.actor.subject == "bob"
    assert uuid.UUID(action.request_id).version == 4
    assert json_format.MessageToDict(action.result)["count"] == 1

    again = await bob.call("get_action", workspace_id=str(ws.id), action_id=action.action_id)
    assert again.action_id == action.action_id
    agent = await bob.call("get_agent", workspace_id=str(ws.id), agent_id="eng-code-1")
    assert agent.status == actions_pb2.AGENT_STATUS_PAUSED
    assert agent.last_action_id == action.action_id


async def test_validate_only_previews_without_acting(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    bob = await connect("bob")
    preview = await bob.call(
        "execute",
        workspace_id=str(ws.id),
        scope=Scope.DEPARTMENT,
        target_id="support",
        reason="support is misbehaving",
        params=PauseAgent(indefinite=True),
        validate_only=True,
    )
    planned = json_format.MessageToDict(preview.result)
    assert sorted(a["agent_id"] for a in planned["agents"]) == ws.agents_in("support")
    agents = await bob.collect("list_agents", workspace_id=str(ws.id), department_id="support")
    assert {a.status for a in agents} == {actions_pb2.AGENT_STATUS_ACTIVE}
    assert await bob.collect("list_actions", workspace_id=str(ws.id)) == []


async def test_rollback_undoes_and_marks_the_original(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    alice = await connect("alice")
    budget = await alice.call(
        "execute",
        workspace_id=str(ws.id),
        scope="fleet",
        reason="cap the fleet",
        params=SetBudget(monthly_limit_cents=50_000),
    )
    undo = await alice.call(
        "rollback", workspace_id=str(ws.id), action_id=budget.action_id, reason="too strict"
    )
    assert undo.action_type == "rollback"
    assert undo.rollback_of_action_id == budget.action_id
    original = await alice.call("get_action", workspace_id=str(ws.id), action_id=budget.action_id)
    assert original.status == actions_pb2.ACTION_STATUS_ROLLED_BACK
    assert original.rollback_action_id == undo.action_id
    with pytest.raises(FailedPrecondition) as raised:
        await alice.call(
            "rollback", workspace_id=str(ws.id), action_id=budget.action_id, reason="again"
        )
    assert raised.value.reason == "ALREADY_ROLLED_BACK"


async def test_list_actions_follows_pages_newest_first(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    alice = await connect("alice")
    made = []
    for cents in range(5):
        action = await alice.call(
            "execute",
            workspace_id=str(ws.id),
            scope="agent",
            target_id="eng-code-2",
            reason=f"budget step {cents}",
            params=SetBudget(monthly_limit_cents=cents * 100),
        )
        made.append(action.action_id)
    restart = await alice.call(
        "execute",
        workspace_id=str(ws.id),
        scope="agent",
        target_id="eng-code-3",
        reason="stuck",
        params=RestartAgent(),
    )
    listed = await alice.collect("list_actions", workspace_id=str(ws.id), page_size=2)
    assert [a.action_id for a in listed] == [restart.action_id, *reversed(made)]
    budgets = await alice.collect(
        "list_actions",
        workspace_id=str(ws.id),
        action_type="set_budget",
        status="completed",
        actor_subject="alice",
        page_size=2,
    )
    assert [a.action_id for a in budgets] == list(reversed(made))


async def test_list_actions_page_returns_one_page_and_its_token(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    alice = await connect("alice")
    made = [
        await alice.call(
            "execute",
            workspace_id=str(ws.id),
            scope="agent",
            target_id=agent,
            reason="page me",
            params=PauseAgent(),
        )
        for agent in ("eng-code-1", "eng-code-2", "eng-code-3")
    ]
    newest_first = [a.action_id for a in reversed(made)]
    first = await alice.call(
        "list_actions_page", workspace_id=str(ws.id), status="completed", page_size=2
    )
    assert isinstance(first, actions_pb2.ListActionsResponse)
    assert [a.action_id for a in first.actions] == newest_first[:2]
    assert first.next_page_token
    last = await alice.call(
        "list_actions_page",
        workspace_id=str(ws.id),
        status="completed",
        page_size=2,
        page_token=first.next_page_token,
    )
    assert [a.action_id for a in last.actions] == newest_first[2:]
    assert last.next_page_token == ""
    with pytest.raises(InvalidArgument) as raised:  # a token is bound to its filters
        await alice.call(
            "list_actions_page",
            workspace_id=str(ws.id),
            page_size=2,
            page_token=first.next_page_token,
        )
    assert "page_token" in {v.field for v in raised.value.field_violations}


async def test_list_action_events_returns_an_actions_events(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    bob = await connect("bob")
    action = await bob.call(
        "execute",
        workspace_id=str(ws.id),
        scope="agent",
        target_id="sup-chat-1",
        reason="show my events",
        params=PauseAgent(duration_minutes=10),
    )
    events = await bob.call(
        "list_action_events", workspace_id=str(ws.id), action_id=action.action_id
    )
    assert [(e.seq, e.event_type) for e in events] == [
        (1, "action.pending"),
        (2, "action.in_progress"),
        (3, "action.completed"),
    ]
    assert events[-1].action == action
    assert all(len(e.hash) == 64 and e.created_at.seconds for e in events)
    with pytest.raises(NotFound):
        await bob.call("list_action_events", workspace_id=str(ws.id), action_id=str(uuid.uuid4()))
    with pytest.raises(InvalidArgument) as raised:
        await bob.call("list_action_events", workspace_id=str(ws.id), action_id="nope")
    assert {v.field for v in raised.value.field_violations} == {"action_id"}
    mallory = await connect("mallory")
    with pytest.raises(PermissionDenied):
        await mallory.call(
            "list_action_events", workspace_id=str(ws.id), action_id=action.action_id
        )


async def test_list_agents_follows_pages_in_id_order(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=3)
    carol = await connect("carol")
    agents = await carol.collect("list_agents", workspace_id=str(ws.id), page_size=2)
    assert [a.agent_id for a in agents] == sorted(ws.agents)
    paused = await carol.collect("list_agents", workspace_id=str(ws.id), status="paused")
    assert paused == []


async def test_list_action_types_is_the_catalog(connect: Connect) -> None:
    carol = await connect("carol")
    types = {t.name: t for t in await carol.call("list_action_types")}
    assert set(types) == {"pause_agent", "resume_agent", "set_budget", "restart_agent"}
    assert not types["restart_agent"].can_rollback


async def test_denied_caller_gets_permission_denied_with_details(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    carol = await connect("carol")
    with pytest.raises(PermissionDenied) as raised:
        await carol.call(
            "execute",
            workspace_id=str(ws.id),
            scope="agent",
            target_id="eng-code-1",
            reason="viewer tries",
            params=PauseAgent(),
        )
    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.reason == "INSUFFICIENT_PERMISSIONS"
    assert raised.value.metadata["required_permission"] == "actions:pause_agent"


async def test_invalid_request_lists_field_violations(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    bob = await connect("bob")
    with pytest.raises(InvalidArgument) as raised:
        await bob.call(
            "execute",
            workspace_id=str(ws.id),
            scope="agent",
            target_id="eng-code-1",
            reason="x",
            params=PauseAgent(),
        )
    assert "reason" in {v.field for v in raised.value.field_violations}


async def test_state_and_lookup_errors_are_typed(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    bob = await connect("bob")
    with pytest.raises(FailedPrecondition) as raised:
        await bob.call(
            "execute",
            workspace_id=str(ws.id),
            scope="agent",
            target_id="eng-code-1",
            reason="already running",
            params=ResumeAgent(),
        )
    assert raised.value.reason == "ALREADY_IN_STATE"
    with pytest.raises(NotFound):
        await bob.call("get_action", workspace_id=str(ws.id), action_id=str(uuid.uuid4()))
    with pytest.raises(NotFound):
        await bob.call("get_agent", workspace_id=str(ws.id), agent_id="no-such-agent")


async def test_reused_request_id_for_another_request_is_already_exists(
    connect: Connect, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    bob = await connect("bob")
    key = f"client-test-{uuid.uuid4().hex}"
    common = {"workspace_id": str(ws.id), "scope": "agent", "reason": "idempotent pause"}
    first = await bob.call(
        "execute", target_id="eng-code-1", params=PauseAgent(), request_id=key, **common
    )
    repeat = await bob.call(
        "execute", target_id="eng-code-1", params=PauseAgent(), request_id=key, **common
    )
    assert repeat.action_id == first.action_id
    with pytest.raises(AlreadyExists) as raised:
        await bob.call(
            "execute", target_id="eng-code-2", params=PauseAgent(), request_id=key, **common
        )
    assert raised.value.reason == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_bad_token_is_unauthenticated(client_action_target: str, sync: bool) -> None:
    client = actions_client(client_action_target, "not-a-jwt", sync=sync)
    try:
        with pytest.raises(Unauthenticated) as raised:
            await client.call("list_action_types")
        assert raised.value.reason == "UNAUTHENTICATED"
    finally:
        await client.close()
