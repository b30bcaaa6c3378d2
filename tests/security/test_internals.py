"""No internals reach callers: an unexpected failure is a correlation id, never a class name,
a message from inside the process or the policy service's own words; every RPC of both
services, streaming ones and malformed requests included, answers with one ErrorInfo.

Each failure is provoked for real (a step of the action raises, the policy service
answers with an error text, a stream's conversion raises, a request's bytes are not a
message) against the real servers.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.actions import convert
from services.actions.catalog.pause_agent import PauseAgent
from services.policy.servicer import PolicyServicer
from tests.actions.helpers import Api, details
from tests.conftest import Secrets
from tests.reliability.harness import create_workspace
from tests.servers import (
    running_action_server,
    running_policy_server_handle,
    write_test_policy,
)

MARKER = "internal-detail-7c1e"  # stands for anything that must stay inside the process


def _assert_no_internals(text: str) -> None:
    assert MARKER not in text
    assert "Error" not in text.replace("ErrorInfo", "")  # no exception class names
    assert "Unexpected <class" not in text


async def test_an_unexpected_failure_inside_an_action_is_a_correlation_id(
    rel_api: Api, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    ws = await create_workspace(pool)

    async def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{MARKER}: host=db.internal user=fleetward")

    monkeypatch.setattr(PauseAgent, "apply", explode)
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as err:
        await rel_api.execute("alice", ws, "pause_agent", target="eng-code-1")
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INTERNAL, "ACTION_EXECUTION_FAILED")
    _assert_no_internals(d.message)
    correlation_id = d.metadata["correlation_id"]
    assert correlation_id in d.message
    row = await pool.fetchrow(
        "SELECT status, error_message, error_details::text AS stored FROM action_audit_log "
        "WHERE action_id = $1",
        uuid.UUID(d.metadata["action_id"]),
    )
    assert row is not None
    assert row["status"] == "failed"
    _assert_no_internals(row["error_message"])
    assert MARKER not in row["stored"]
    # The log has it all, under the same id.
    [record] = [r for r in caplog.records if correlation_id in r.getMessage()]
    assert record.exc_info is not None
    assert MARKER in str(record.exc_info[1])


class _Talkative(policy_pb2_grpc.PolicyServiceServicer):
    """A policy service that refuses every question in its own words."""

    async def _refuse(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{MARKER}: rule 17 of /etc/x")

    Check = BatchCheck = CheckResources = GetPolicyInfo = _refuse


@contextlib.asynccontextmanager
async def _talkative_policy() -> AsyncIterator[str]:
    server = grpc.aio.server()
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(_Talkative(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_the_policy_services_own_words_stay_in_our_log(
    database_dsn: str, dev_secrets: Secrets, pool: asyncpg.Pool, caplog: Any
) -> None:
    ws = await create_workspace(pool)
    async with (
        _talkative_policy() as policy,
        running_action_server(database_dsn, policy, dev_secrets) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        with caplog.at_level(logging.WARNING), pytest.raises(grpc.aio.AioRpcError) as err:
            await Api(channel, dev_secrets).execute("alice", ws, "pause_agent", target="eng-code-1")
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "POLICY_UNAVAILABLE")
    assert MARKER not in d.message
    assert "INVALID_ARGUMENT" in d.message  # the code, for whoever operates both services
    assert any(MARKER in r.getMessage() for r in caplog.records)


async def test_an_exception_inside_a_watch_stream_is_internal_with_error_info(
    rel_api: Api, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = await create_workspace(pool)
    await rel_api.execute("alice", ws, "pause_agent", target="eng-code-1")

    def explode(*args: Any) -> Any:
        raise KeyError(MARKER)

    monkeypatch.setattr(convert, "to_event", explode)
    stream = rel_api.stub.WatchActions(
        actions_pb2.WatchActionsRequest(workspace_id=str(ws)), metadata=rel_api.auth("bob")
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stream:
            pass
    d = details(err.value)
    assert (d.code, d.reason, d.error_infos) == (grpc.StatusCode.INTERNAL, "INTERNAL", 1)
    assert d.metadata["correlation_id"] in d.message
    _assert_no_internals(d.message)


async def test_the_policy_servicer_funnels_unexpected_errors(
    tmp_path: Any, dev_secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError(MARKER)

    monkeypatch.setattr(PolicyServicer, "_decide", explode)
    async with (
        running_policy_server_handle(write_test_policy(tmp_path), dev_secrets) as built,
        grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel,
    ):
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(
                policy_pb2.CheckRequest(
                    subject="bob",
                    workspace_id=str(uuid.uuid4()),
                    action="actions:read",
                    resource="fleet",
                ),
                metadata=(("authorization", f"Bearer {dev_secrets.service_token()}"),),
            )
    d = details(err.value)
    assert (d.code, d.reason, d.domain, d.error_infos) == (
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        "fleetward",
        1,
    )
    _assert_no_internals(d.message)


async def _send_raw(channel: grpc.aio.Channel, method: str, data: bytes) -> None:
    """Send ``data`` as the request bytes of ``method`` (no serializer)."""
    raw: Any = channel
    if method.endswith("WatchActions"):
        async for _ in raw.unary_stream(method)(data, timeout=5):
            pass
    else:
        await raw.unary_unary(method)(data, timeout=5)


# Field 1 (a string) holding bytes that are not UTF-8: not a message of any of our types.
NOT_A_MESSAGE = b"\x0a\x02\xff\xfe"


@pytest.mark.parametrize(
    "method",
    [
        "/fleetward.actions.v1.ActionService/Execute",
        "/fleetward.actions.v1.ActionService/ListActionEvents",
        "/fleetward.actions.v1.ActionService/WatchActions",
        "/fleetward.policy.v1.PolicyService/Check",
        "/fleetward.policy.v1.PolicyService/CheckResources",
    ],
)
async def test_a_request_that_is_not_a_message_is_invalid_argument(
    rel_action_target: str, rel_policy_target: str, method: str
) -> None:
    from services.common.metrics import RPC_REQUESTS

    counted = RPC_REQUESTS.labels(method, "INVALID_ARGUMENT")._value
    before = counted.get()
    target = rel_policy_target if ".policy." in method else rel_action_target
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _send_raw(channel, method, NOT_A_MESSAGE)
    assert counted.get() == before + 1  # in the metrics (and the access log) like any call
    d = details(err.value)
    assert (d.code, d.reason, d.error_infos) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        1,
    )
    assert "request" in d.field_violations
    _assert_no_internals(d.message)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.OutOfMemoryError("out of memory"),
        asyncpg.exceptions.DiskFullError("could not extend file"),
        TimeoutError(),
        ConnectionRefusedError(111, "Connect call failed"),
    ],
)
def test_database_exhaustion_is_unavailable_and_names_no_driver(exc: Exception) -> None:
    """A server out of connections (each replica opens two pools) is DATABASE_UNAVAILABLE,
    which clients retry, not INTERNAL; the message names the kind of failure only."""
    from services.actions.servicer import database_error

    error = database_error(exc)
    assert error is not None
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "DATABASE_UNAVAILABLE"
    assert type(exc).__name__ not in error.message
    assert str(exc) not in error.message or not str(exc)
