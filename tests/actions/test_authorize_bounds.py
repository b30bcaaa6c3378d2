"""Denials at scale stay bounded (docs/architecture.md §5.10): ten thousand denied agents
fit in one status, and CheckAccess of large departments in one answer, through the real
client and servers of the guarded policy (see test_authorize_changes.py).
"""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2_grpc
from fleetward.client import InvalidArgument, ScopeLike

from services.common.status import STATUS_BUDGET
from tests.actions.guarded import Guarded, create_workspace
from tests.actions.helpers import Api, details, execute_request


async def test_ten_thousand_denied_agents_fit_in_a_bounded_status(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    agents = {f"eng-review-{i:05d}": "engineering" for i in range(10_000)}
    ws = await create_workspace(pool, agents)
    request = execute_request(ws, "pause_agent", scope="department", target="engineering")
    async with grpc.aio.insecure_channel(guarded.target) as channel:
        stub = actions_pb2_grpc.ActionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Execute(request, metadata=Api.bearer(guarded.secrets, "bob"), timeout=60)
    trailers = dict(err.value.trailing_metadata() or ())
    assert len(trailers["grpc-status-details-bin"]) <= STATUS_BUDGET
    error = details(err.value)
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.metadata["denied_count"] == "10000"
    assert error.metadata["denied_agent_ids"].split(",") == sorted(agents)[:10]
    assert "and 9990 more" in error.message
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM agents WHERE workspace_id = $1 AND status = 'paused'", ws
        )
        == 0
    )


async def test_check_access_of_500_large_departments_fits_in_one_answer(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    departments = [f"d{i:03d}-{'x' * 59}" for i in range(500)]
    agents = {f"zz-{d[:4]}-{j:02d}-{'y' * 53}": d for d in departments for j in range(11)}
    ws = await create_workspace(pool, agents)
    targets: list[tuple[ScopeLike, str]] = [("department", d) for d in departments]
    async with guarded.client("bob") as client:
        answer = await client.check_access(workspace_id=str(ws), targets=targets)
    assert answer.ByteSize() < 1024 * 1024
    for access in answer.results:
        [pause] = [d for d in access.denied if d.permission == "actions:pause_agent"]
        assert pause.denied_count == 11
        assert len(pause.denied_agent_ids) == 5


async def test_check_access_refuses_the_same_target_asked_twice(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    # One question 500 times used to get 500 answers (a 202 KB reply to 8 KB, 11.6 ms of
    # the server's time); the shape of the request is checked before anything is read.
    ws = await create_workspace(pool)
    fleet: list[tuple[ScopeLike, str]] = [("fleet", "")] * 500
    for subject in ("mallory", "frank"):
        async with guarded.client(subject) as client:
            with pytest.raises(InvalidArgument):
                await client.check_access(workspace_id=str(ws), targets=fleet)
    async with guarded.client("frank") as client:
        answer = await client.check_access(workspace_id=str(ws), targets=fleet[:1])
    [pause] = [d for d in answer.results[0].denied if d.permission == "actions:pause_agent"]
    assert list(pause.denied_agent_ids) == ["eng-review-1", "eng-review-2"]
