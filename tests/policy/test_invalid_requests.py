"""Malformed requests get INVALID_ARGUMENT with BadRequest field violations."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from fleetward.policy.v1 import policy_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.policy.conftest import AGENT, DEMO_WS, RunningPolicy


def decode(error: grpc.aio.AioRpcError) -> tuple[Any, dict[str, str]]:
    """The ErrorInfo and the field violations (field -> description) of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info, violations = None, {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = {v.field: v.description for v in bad.field_violations}
    assert info is not None
    assert info.domain == "fleetward"
    return info, violations


async def _invalid(call: Any) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, violations = decode(caught.value)
    assert info.reason == "INVALID_ARGUMENT"
    return violations


async def test_empty_check_names_every_missing_field(demo: RunningPolicy) -> None:
    violations = await _invalid(demo.stub.Check(policy_pb2.CheckRequest(), metadata=demo.metadata))
    assert set(violations) == {"subject", "workspace_id", "action", "resource"}
    assert all(v == "required" for v in violations.values())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("workspace_id", "acme"),
        ("workspace_id", "*"),
        ("workspace_id", "ac3e0000-0000-4000-8000-00000000000"),
        ("action", "actions:*"),
        ("action", "actions:fly"),
        ("action", "read"),
        ("resource", "fleet/"),
        ("resource", "fleet/**"),
        ("resource", "fleet/departments/../agents/x"),
        ("resource", "fleet/departments/Eng"),
        ("resource", "fleet/departments/eng/agents"),
        ("resource", "fleet/agents/eng-code-1"),
        ("resource", "/fleet"),
        ("subject", " bob"),
        ("subject", "b\nob"),
        ("subject", "x" * 257),
    ],
)
async def test_malformed_field_is_rejected(demo: RunningPolicy, field: str, value: str) -> None:
    fields = {
        "subject": "bob",
        "workspace_id": DEMO_WS,
        "action": "actions:read",
        "resource": AGENT,
        field: value,
    }
    request = policy_pb2.CheckRequest(
        subject=fields["subject"],
        workspace_id=fields["workspace_id"],
        action=fields["action"],
        resource=fields["resource"],
    )
    call = demo.stub.Check(request, metadata=demo.metadata)
    violations = await _invalid(call)
    assert list(violations) == [field]


async def test_batch_violations_name_the_item(demo: RunningPolicy) -> None:
    good = policy_pb2.CheckRequest(
        subject="bob", workspace_id=DEMO_WS, action="actions:read", resource="fleet"
    )
    bad = policy_pb2.CheckRequest(subject="bob", workspace_id="nope", action="actions:read")
    request = policy_pb2.BatchCheckRequest(checks=[good, bad])
    violations = await _invalid(demo.stub.BatchCheck(request, metadata=demo.metadata))
    assert set(violations) == {"checks[1].workspace_id", "checks[1].resource"}


@pytest.mark.parametrize("count", [0, 101])
async def test_batch_size_is_bounded(demo: RunningPolicy, count: int) -> None:
    check = policy_pb2.CheckRequest(
        subject="bob", workspace_id=DEMO_WS, action="actions:read", resource="fleet"
    )
    request = policy_pb2.BatchCheckRequest(checks=[check] * count)
    violations = await _invalid(demo.stub.BatchCheck(request, metadata=demo.metadata))
    assert list(violations) == ["checks"]


async def test_batch_of_100_is_answered(demo: RunningPolicy) -> None:
    check = policy_pb2.CheckRequest(
        subject="bob", workspace_id=DEMO_WS, action="actions:read", resource="fleet"
    )
    request = policy_pb2.BatchCheckRequest(checks=[check] * 100)
    reply = await demo.stub.BatchCheck(request, metadata=demo.metadata)
    assert len(reply.results) == 100
    assert all(r.allowed for r in reply.results)
