"""Reads: GetAction, ListActions (filters, keyset pages), ListActionEvents, ListActionTypes,
GetAgent, ListAgents."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from datetime import UTC
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from google.protobuf import timestamp_pb2

from bench import seed
from services.actions import catalog, paging
from services.actions.store.history import page_statement
from services.common.metrics import RPC_REQUESTS
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


EVENTS_METHOD = "/fleetward.actions.v1.ActionService/ListActionEvents"


async def _events(api: Api, ws: uuid.UUID | str, action_id: str) -> list[actions_pb2.ActionEvent]:
    reply = await api.stub.ListActionEvents(
        actions_pb2.ListActionEventsRequest(workspace_id=str(ws), action_id=action_id),
        metadata=api.auth("carol"),
    )
    return list(reply.events)


async def test_list_action_events_are_an_actions_events_in_seq_order(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await api.execute("bob", ws.id, "pause_agent", target="sup-chat-1")
    await api.execute("bob", ws.id, "pause_agent", target="sup-chat-2")  # interleaved
    undo = await api.rollback("bob", ws.id, pause.action_id)

    events = await _events(api, ws.id, pause.action_id)
    assert [e.event_type for e in events] == [
        "action.pending",
        "action.in_progress",
        "action.completed",
        "action.rolled_back",
    ]
    seqs = [e.seq for e in events]
    assert seqs[:3] == [1, 2, 3]
    assert seqs[3] > 6  # after the other action's events and the rollback's first ones
    assert {e.workspace_id for e in events} == {str(ws.id)}
    assert {e.action.action_id for e in events} == {pause.action_id}
    assert [e.action.status for e in events] == [
        STATUS.ACTION_STATUS_PENDING,
        STATUS.ACTION_STATUS_IN_PROGRESS,
        STATUS.ACTION_STATUS_COMPLETED,
        STATUS.ACTION_STATUS_ROLLED_BACK,
    ]
    assert events[2].action == pause  # the completed snapshot is the action Execute returned
    stored = await pool.fetch(
        "SELECT seq, hash, created_at FROM action_events WHERE action_id = $1 ORDER BY seq",
        uuid.UUID(pause.action_id),
    )
    assert [(e.seq, e.hash) for e in events] == [(r["seq"], r["hash"]) for r in stored]
    assert [e.created_at.ToDatetime(tzinfo=UTC) for e in events] == [
        r["created_at"] for r in stored
    ]
    rollback = await _events(api, ws.id, undo.action_id)
    assert [e.event_type for e in rollback] == [
        "action.pending",
        "action.in_progress",
        "action.completed",
    ]
    assert rollback[-1].action == undo


async def test_list_action_events_of_a_denied_action(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("carol", ws.id, "pause_agent", target="eng-code-1")  # a viewer
    assert details(err.value).code == grpc.StatusCode.PERMISSION_DENIED
    denied = await pool.fetchval(
        "SELECT action_id FROM action_audit_log WHERE workspace_id = $1 AND status = 'denied'",
        ws.id,
    )
    events = await _events(api, ws.id, str(denied))
    assert [e.event_type for e in events] == ["action.denied"]
    assert events[0].action.status == STATUS.ACTION_STATUS_DENIED
    assert events[0].action.actor.subject == "carol"


def _events_request(workspace: object, action: str) -> actions_pb2.ListActionEventsRequest:
    return actions_pb2.ListActionEventsRequest(workspace_id=str(workspace), action_id=action)


async def _assert_events_not_found_for_a_reader(
    api: Api, ws_id: uuid.UUID, other_id: uuid.UUID, action_id: str
) -> None:
    """An unknown action, or one of another workspace: NOT_FOUND for a reader."""
    for workspace, action in ((ws_id, str(uuid.uuid4())), (other_id, action_id)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.stub.ListActionEvents(
                _events_request(workspace, action), metadata=api.auth("carol")
            )
        got = details(err.value)
        assert (got.code, got.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


async def _assert_events_denied_without_a_role(api: Api, ws_id: uuid.UUID, action_id: str) -> None:
    """Someone without a role: PERMISSION_DENIED, whether or not the ids exist."""
    for workspace, action in (
        (ws_id, action_id),
        (ws_id, str(uuid.uuid4())),
        (uuid.uuid4(), str(uuid.uuid4())),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.stub.ListActionEvents(
                _events_request(workspace, action), metadata=api.auth("mallory")
            )
        got = details(err.value)
        assert (got.code, got.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "INSUFFICIENT_PERMISSIONS",
        )
        assert got.metadata["required_permission"] == "actions:read"


async def _assert_events_malformed_ids_invalid(api: Api, action_id: str) -> None:
    """Malformed ids: INVALID_ARGUMENT naming each field, before anything is read."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.ListActionEvents(
            _events_request("not-a-uuid", "{" + action_id + "}"), metadata=api.auth("mallory")
        )
    got = details(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(got.field_violations) == {"workspace_id", "action_id"}


async def _assert_events_counted_and_logged(
    counted: dict[str, Any],
    before: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    ws_id: uuid.UUID,
) -> None:
    """Counted and logged like every RPC. The server counts a call once its status is
    sent, so the last one may land a moment after the client saw the status."""
    expected = {
        "NOT_FOUND": before["NOT_FOUND"] + 2,
        "PERMISSION_DENIED": before["PERMISSION_DENIED"] + 3,
        "INVALID_ARGUMENT": before["INVALID_ARGUMENT"] + 1,
    }
    for _ in range(500):
        after = {code: value.get() for code, value in counted.items()}
        if after == expected:
            break
        await asyncio.sleep(0.01)
    assert after == expected
    logged = [r for r in caplog.records if getattr(r, "method", "") == EVENTS_METHOD]
    assert [getattr(r, "code", "") for r in logged] == [
        "NOT_FOUND",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
        "INVALID_ARGUMENT",
    ]
    assert getattr(logged[0], "workspace_id", "") == str(ws_id)


async def test_list_action_events_checks_like_get_action(
    api: Api, new_workspace: NewWorkspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetward.access")
    counted = {
        code: RPC_REQUESTS.labels(EVENTS_METHOD, code)._value
        for code in ("NOT_FOUND", "PERMISSION_DENIED", "INVALID_ARGUMENT")
    }
    before = {code: value.get() for code, value in counted.items()}
    ws = await new_workspace()
    other = await new_workspace()
    done = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    await _assert_events_not_found_for_a_reader(api, ws.id, other.id, done.action_id)
    await _assert_events_denied_without_a_role(api, ws.id, done.action_id)
    await _assert_events_malformed_ids_invalid(api, done.action_id)
    await _assert_events_counted_and_logged(counted, before, caplog, ws.id)


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


def _forged_token(cursor: list[object]) -> str:
    raw = json.dumps({"f": "x" * 24, "c": cursor}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        # Found by an outside review: each of these reached INTERNAL.
        (
            lambda ws: actions_pb2.ListActionsRequest(
                workspace_id=ws, created_after=timestamp_pb2.Timestamp(seconds=10**12)
            ),
            "created_after",
        ),
        (
            lambda ws: actions_pb2.ListActionsRequest(
                workspace_id=ws, created_before=timestamp_pb2.Timestamp(seconds=-(10**12))
            ),
            "created_before",
        ),
        (
            lambda ws: actions_pb2.ListActionsRequest(
                workspace_id=ws, created_after=timestamp_pb2.Timestamp(nanos=-5)
            ),
            "created_after",
        ),
        (
            lambda ws: actions_pb2.ListActionsRequest(
                workspace_id=ws, created_after=timestamp_pb2.Timestamp(nanos=10**9)
            ),
            "created_after",
        ),
        (
            lambda ws: actions_pb2.ListActionsRequest(workspace_id=ws, actor_subject="a\x00b"),
            "actor_subject",
        ),
        (
            lambda ws: actions_pb2.ListActionsRequest(workspace_id=ws, actor_subject="a\x1b[2Kb"),
            "actor_subject",
        ),
        (
            lambda ws: actions_pb2.ListActionsRequest(
                workspace_id=ws, page_token=base64.urlsafe_b64encode(b"[" * 50_000).decode()
            ),
            "page_token",
        ),
        (
            lambda ws: actions_pb2.ListAgentsRequest(
                workspace_id=ws, page_token=base64.urlsafe_b64encode(b"[" * 50_000).decode()
            ),
            "page_token",
        ),
        (
            lambda ws: actions_pb2.ListActionsRequest(workspace_id=ws, page_token="A" * 5000),
            "page_token",
        ),
    ],
)
async def test_hostile_read_filters_are_invalid_argument_not_internal(
    api: Api, new_workspace: NewWorkspace, request_: Any, field: str
) -> None:
    ws = await new_workspace()
    request = request_(str(ws.id))
    method = (
        api.stub.ListActions
        if isinstance(request, actions_pb2.ListActionsRequest)
        else api.stub.ListAgents
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await method(request, metadata=api.auth("bob"))
    d = details(err.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT, d
    assert field in d.field_violations


def _forged_agents_cursor_cases(api: Api, ws_id: uuid.UUID) -> list[tuple[Any, Any]]:
    agents_filters = {"workspace_id": str(ws_id), "department_id": "", "status": None}
    return [
        (
            api.stub.ListAgents,
            actions_pb2.ListAgentsRequest(
                workspace_id=str(ws_id), page_token=paging.encode(agents_filters, ["a\x00"])
            ),
        ),
        (
            api.stub.ListAgents,
            actions_pb2.ListAgentsRequest(
                workspace_id=str(ws_id),
                page_token=paging.encode(agents_filters, [7]),
            ),
        ),
    ]


def _forged_actions_cursor_cases(api: Api, ws_id: uuid.UUID) -> list[tuple[Any, Any]]:
    actions_filters = {
        "workspace_id": str(ws_id),
        "action_type": "",
        "status": None,
        "actor_subject": "",
        "target_id": "",
        "created_after": None,
        "created_before": None,
    }
    return [
        (
            api.stub.ListActions,
            actions_pb2.ListActionsRequest(
                workspace_id=str(ws_id),
                page_token=paging.encode(
                    actions_filters, ["2026-01-01T00:00:00", str(uuid.uuid4())]
                ),
            ),
        ),
        (
            api.stub.ListActions,
            actions_pb2.ListActionsRequest(
                workspace_id=str(ws_id),
                page_token=paging.encode(actions_filters, [None, None]),
            ),
        ),
        *(
            (
                api.stub.ListActions,
                actions_pb2.ListActionsRequest(
                    workspace_id=str(ws_id),
                    # Valid ISO times that do not exist in UTC (before year 1, after 9999).
                    page_token=paging.encode(actions_filters, [when, str(uuid.uuid4())]),
                ),
            )
            for when in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
        ),
        (
            api.stub.ListActions,
            actions_pb2.ListActionsRequest(
                workspace_id=str(ws_id), page_token=_forged_token(["x"])
            ),
        ),
    ]


async def test_forged_page_cursors_are_invalid_argument_not_internal(
    api: Api, new_workspace: NewWorkspace
) -> None:
    # The binding of a token to its filters is a plain hash anyone can compute, so a forged
    # token may carry any cursor: each value is checked before it reaches PostgreSQL.
    ws = await new_workspace()
    cases: list[tuple[Any, Any]] = [
        *_forged_agents_cursor_cases(api, ws.id),
        *_forged_actions_cursor_cases(api, ws.id),
    ]
    for method, request in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await method(request, metadata=api.auth("bob"))
        assert details(err.value).code == grpc.StatusCode.INVALID_ARGUMENT, request


async def test_a_list_filter_matching_nothing_uses_its_index_in_200000_rows(
    pool: asyncpg.Pool,
) -> None:
    # A prepared statement gets a generic plan after five runs. The statement must let
    # that plan use the index of the filter that is set: a filter that matches nothing
    # must not walk a workspace's whole history.
    ws = uuid.uuid4()
    async with pool.acquire() as conn:
        await seed.seed_agents(conn, [ws], 10, 2)
        await seed.seed_audit_rows(conn, ws, 200_000, 1000)
        # Real histories hold more than one status (a generic plan's estimate for one of
        # them is 1 / the number of statuses); these have no rollback action to name, so
        # the administrator writes them past the guard triggers.
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE action_audit_log SET status = 'rolled_back' "
                "WHERE workspace_id = $1 AND target_id LIKE '%7'",
                ws,
            )
        await conn.execute("ANALYZE action_audit_log")
        every_filter: tuple[dict[str, str], ...] = (
            {"actor_subject": "nobody"},
            {"target_id": "no-such"},
            {"action_type": "rollback"},
            {"status": "failed"},
        )
        for n, filters in enumerate(every_filter):
            sql, args = page_statement(ws, filters, None, 51)
            # EXPLAIN EXECUTE of a prepared statement shows its cached plan: forced generic,
            # it is the plan every call gets once PostgreSQL stops re-planning.
            await conn.execute(f"PREPARE generic_{n} AS {sql}")
            values = ", ".join(_literal(a) for a in args)  # EXECUTE takes no parameters
            async with conn.transaction():
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                rows = await conn.fetch(
                    f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE generic_{n}({values})"
                )
            await conn.execute(f"DEALLOCATE generic_{n}")
            plan = "\n".join(row[0] for row in rows)
            assert "Seq Scan" not in plan, plan
            assert "Rows Removed by Filter" not in plan, plan
            assert "Index" in plan, plan


def _literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
