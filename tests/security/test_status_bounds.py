"""Errors that echo huge or many bad fields still reach the caller as themselves.

Regression (issue 8): a status travels in HTTP/2 trailers, which gRPC clients refuse
above 8 KiB; BatchCheck with many invalid checks, or a field echoing 200 KB of input,
reached the caller as RESOURCE_EXHAUSTED instead of INVALID_ARGUMENT.
"""

from __future__ import annotations

import grpc
import pytest
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.common.status import (
    FieldViolation,
    PreconditionViolation,
    invalid_argument,
)
from tests.actions.helpers import details
from tests.conftest import Secrets


def test_a_status_with_thousands_of_huge_violations_stays_small() -> None:
    error = invalid_argument(
        [FieldViolation(f"checks[{i}].action", "💥" * 5000) for i in range(1000)]
    )
    error.metadata = {"value": "é" * 100_000}
    error.precondition_violations = [PreconditionViolation("X", "y" * 9999, "z" * 9999)] * 500
    status = error.to_proto()
    assert len(status.SerializeToString()) <= 4000
    assert len(status.message.encode()) <= 512
    assert status.details
    assert status.message.startswith("invalid request")


@pytest.mark.parametrize("value", ["x" * 3000, "💥" * 700])
async def test_batch_check_with_a_hundred_bad_checks_is_invalid_argument(
    rel_policy_target: str, dev_secrets: Secrets, value: str
) -> None:
    checks = [
        policy_pb2.CheckRequest(
            subject="bob", workspace_id=value[:500], action=value, resource=value
        )
        for _ in range(100)
    ]
    async with grpc.aio.insecure_channel(rel_policy_target) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.BatchCheck(
                policy_pb2.BatchCheckRequest(checks=checks),
                metadata=(("authorization", f"Bearer {dev_secrets.service_token()}"),),
                timeout=10,
            )
    info = details(caught.value)
    assert info.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == "INVALID_ARGUMENT"
    assert info.field_violations
