"""The trace id on the audit row, with tracing off (the default, as under ``make run``): the
caller's W3C ``traceparent`` names the trace on the row, its events and every read; a
malformed one names nothing; the id never changes afterwards, and a rewrite is found by
``audit verify``."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from services.actions import lifecycle, store
from services.actions.audit.verify import verify_workspace
from services.actions.db import init_connection
from services.actions.model import NewAction, Outcome
from services.common import tracing
from services.common.tracing import Tracing
from tests.actions.helpers import execute_request
from tests.conftest import NewWorkspace, Secrets
from tests.tracing.conftest import Services

# 0006's claim without the trace id, as a replica of the previous version still calls it
# during a rolling deploy.
PREVIOUS_CLAIM = "SELECT * FROM fleetward_claim_action({})".format(
    ", ".join(f"${i}" for i in range(1, 22))
)


@pytest.fixture(scope="module")
def traced(provider: TracerProvider) -> Tracing:
    """The services untraced, as by default (and as ``make run`` starts them)."""
    return tracing.OFF


@pytest.fixture
async def stub(services: Services) -> AsyncIterator[actions_pb2_grpc.ActionServiceAsyncStub]:
    """A bare stub: the test writes every header itself."""
    async with grpc.aio.insecure_channel(services.actions) as channel:
        yield actions_pb2_grpc.ActionServiceStub(channel)


def traceparent() -> tuple[str, str]:
    """A fresh sampled W3C ``traceparent`` and its trace id."""
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


def headers(
    secrets_: Secrets, subject: str, parent: str | None
) -> tuple[tuple[str, str | bytes], ...]:
    """A user token for ``subject`` and, when given, ``traceparent``."""
    found: tuple[tuple[str, str | bytes], ...] = (
        ("authorization", f"Bearer {secrets_.user_token(subject)}"),
    )
    return found + ((("traceparent", parent),) if parent is not None else ())


async def _pause(
    stub: actions_pb2_grpc.ActionServiceAsyncStub,
    secrets_: Secrets,
    workspace: uuid.UUID,
    parent: str | None,
    *,
    subject: str = "bob",
    request_id: str | None = None,
) -> actions_pb2.Action:
    request = execute_request(
        workspace, "pause_agent", target="eng-code-1", request_id=request_id, duration_minutes=30
    )
    action: actions_pb2.Action = await stub.Execute(
        request, metadata=headers(secrets_, subject, parent), timeout=10
    )
    return action


async def _payload_trace_ids(pool: asyncpg.Pool, action_id: str) -> list[Any]:
    rows = await pool.fetch(
        "SELECT payload->>'trace_id' AS t FROM action_events WHERE action_id = $1 ORDER BY seq",
        uuid.UUID(action_id),
    )
    return [row["t"] for row in rows]


async def test_the_callers_trace_is_on_the_row_its_events_and_every_read(
    stub: actions_pb2_grpc.ActionServiceAsyncStub,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    workspace = await new_workspace()
    parent, trace_id = traceparent()
    auth = headers(dev_secrets, "bob", None)
    pause = await _pause(stub, dev_secrets, workspace.id, parent)

    assert pause.trace_id == trace_id
    got = await stub.GetAction(
        actions_pb2.GetActionRequest(workspace_id=str(workspace.id), action_id=pause.action_id),
        metadata=auth,
    )
    listed = await stub.ListActions(
        actions_pb2.ListActionsRequest(workspace_id=str(workspace.id)), metadata=auth
    )
    assert got.trace_id == trace_id
    assert [a.trace_id for a in listed.actions] == [trace_id]
    # Inside the hashed documents: every event of the action carries it.
    assert await _payload_trace_ids(pool, pause.action_id) == [trace_id] * 3
    watch = stub.WatchActions(
        actions_pb2.WatchActionsRequest(workspace_id=str(workspace.id)), metadata=auth
    )
    replayed = []
    async for event in watch:
        replayed.append(event.action.trace_id)
        if len(replayed) == 3:
            break
    watch.cancel()
    assert replayed == [trace_id] * 3

    # The rollback is its own request: its own trace; the original keeps its own.
    undo_parent, undo_trace = traceparent()
    undo = await stub.Rollback(
        actions_pb2.RollbackRequest(
            workspace_id=str(workspace.id),
            action_id=pause.action_id,
            reason="undo, traced",
            request_id=uuid.uuid4().hex,
        ),
        metadata=headers(dev_secrets, "bob", undo_parent),
    )
    assert undo.trace_id == undo_trace
    again = await stub.GetAction(
        actions_pb2.GetActionRequest(workspace_id=str(workspace.id), action_id=pause.action_id),
        metadata=auth,
    )
    assert again.trace_id == trace_id
    assert again.status == actions_pb2.ACTION_STATUS_ROLLED_BACK
    async with pool.acquire() as conn:
        assert (await verify_workspace(conn, workspace.id)).breaks == []


@pytest.mark.parametrize(
    "parent",
    [
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff is invalid
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero parent id
        "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",  # 30 digits
        "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",  # not hex
        "00-0af7651916cd43dd8448eb211c80319c'); DROP TABLE agents; --",
        "<script>alert(1)</script>",
        "",
    ],
)
async def test_a_malformed_traceparent_names_no_trace_and_the_action_still_runs(
    stub: actions_pb2_grpc.ActionServiceAsyncStub,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
    parent: str,
) -> None:
    workspace = await new_workspace()
    pause = await _pause(stub, dev_secrets, workspace.id, parent)
    assert pause.status == actions_pb2.ACTION_STATUS_COMPLETED
    assert pause.trace_id == ""
    row = await pool.fetchrow(
        "SELECT trace_id FROM action_audit_log WHERE action_id = $1", uuid.UUID(pause.action_id)
    )
    assert row is not None
    assert row["trace_id"] is None
    assert await _payload_trace_ids(pool, pause.action_id) == [None] * 3


async def test_a_denied_request_records_its_trace_too(
    stub: actions_pb2_grpc.ActionServiceAsyncStub,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    workspace = await new_workspace()
    parent, trace_id = traceparent()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _pause(stub, dev_secrets, workspace.id, parent, subject="carol")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    row = await pool.fetchrow(
        "SELECT status, trace_id FROM action_audit_log WHERE workspace_id = $1", workspace.id
    )
    assert row is not None
    assert (row["status"], row["trace_id"]) == ("denied", trace_id)


async def test_a_repeat_under_another_trace_answers_with_the_first_trace(
    stub: actions_pb2_grpc.ActionServiceAsyncStub, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    workspace = await new_workspace()
    key = uuid.uuid4().hex
    first_parent, first_trace = traceparent()
    second_parent, _ = traceparent()
    first = await _pause(stub, dev_secrets, workspace.id, first_parent, request_id=key)
    again = await _pause(stub, dev_secrets, workspace.id, second_parent, request_id=key)
    assert again.action_id == first.action_id
    assert again.trace_id == first.trace_id == first_trace


async def test_the_trace_id_never_changes_and_a_rewrite_is_found(
    stub: actions_pb2_grpc.ActionServiceAsyncStub,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
    database_dsn: str,
) -> None:
    workspace = await new_workspace()
    parent, _ = traceparent()
    pause = await _pause(stub, dev_secrets, workspace.id, parent)
    action_id = uuid.UUID(pause.action_id)
    other = secrets.token_hex(16)

    # The services' own role may not write the column at all...
    runtime = await asyncpg.connect(database_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await runtime.execute(
                "UPDATE action_audit_log SET trace_id = $2 WHERE action_id = $1", action_id, other
            )
    finally:
        await runtime.close()
    async with pool.acquire() as conn:
        # ...the table's guard refuses it even to its owner...
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="immutable column"):
            await conn.execute(
                "UPDATE action_audit_log SET trace_id = $2 WHERE action_id = $1", action_id, other
            )
        # With the guard lifted (rolled back below), only a trace id's form is accepted,
        # and a rewrite is found: the row no longer says what its last hashed event says.
        tx = conn.transaction()
        await tx.start()
        await conn.execute("ALTER TABLE action_audit_log DISABLE TRIGGER USER")
        with pytest.raises(asyncpg.CheckViolationError):
            async with conn.transaction():  # a savepoint
                await conn.execute(
                    "UPDATE action_audit_log SET trace_id = 'not a trace' WHERE action_id = $1",
                    action_id,
                )
        await conn.execute(
            "UPDATE action_audit_log SET trace_id = $2 WHERE action_id = $1", action_id, other
        )
        broken = await verify_workspace(conn, workspace.id)
        await tx.rollback()
    assert [b.kind for b in broken.breaks] == ["row_rewritten"], broken.breaks


async def test_a_replica_of_the_previous_version_still_records_without_a_trace_id(
    stub: actions_pb2_grpc.ActionServiceAsyncStub,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
    database_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """During a rolling deploy the old replicas call the previous claim function, whose rows
    have no trace id: they still record, read and verify."""
    workspace = await new_workspace()
    new = NewAction(
        action_id=uuid.uuid4(),
        workspace_id=workspace.id,
        action_type="restart_agent",
        scope="agent",
        target_id="eng-code-1",
        params={},
        reason="an old replica's action",
        subject="bob",
        roles=("operator",),
        can_rollback=False,
        request_id=uuid.uuid4().hex,
        fingerprint="old",
        policy_version="v-old",
        decision_id="d-old",
    )
    previous_args = NewAction.insert_args

    def without_trace(self: NewAction) -> tuple[Any, ...]:
        return previous_args(self)[:-1]

    async def effect(_conn: Any) -> Outcome:
        return Outcome({"count": 0})

    monkeypatch.setattr(store.actions, "CLAIM", PREVIOUS_CLAIM)
    monkeypatch.setattr(NewAction, "insert_args", without_trace)
    runtime = await asyncpg.create_pool(database_dsn, min_size=1, max_size=1, init=init_connection)
    assert runtime is not None
    try:
        # The previous version recorded every action in two steps, through its claim.
        done = await lifecycle.two_step.run(runtime, new, effect, 2000)
    finally:
        await runtime.close()
    monkeypatch.undo()

    assert (done["status"], done["trace_id"]) == ("completed", None)
    got = await stub.GetAction(
        actions_pb2.GetActionRequest(workspace_id=str(workspace.id), action_id=str(new.action_id)),
        metadata=headers(dev_secrets, "bob", None),
    )
    assert (got.status, got.trace_id) == (actions_pb2.ACTION_STATUS_COMPLETED, "")
    assert await _payload_trace_ids(pool, str(new.action_id)) == [None] * 3
    async with pool.acquire() as conn:
        assert (await verify_workspace(conn, workspace.id)).breaks == []
