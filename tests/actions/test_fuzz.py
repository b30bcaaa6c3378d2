"""Arbitrary requests never leak as UNKNOWN: every refusal is a known code with one ErrorInfo."""

from __future__ import annotations

import uuid

import grpc
from fleetward.actions.v1 import actions_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.actions.helpers import Api, details
from tests.conftest import NewWorkspace

EXPECTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}
text = st.text(max_size=80) | st.sampled_from(["eng-code-1", "support", "", "../x", "a" * 64])


async def test_arbitrary_execute_requests_get_known_statuses(
    api: Api, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    requests: list[actions_pb2.ExecuteRequest] = []

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(
        workspace=st.sampled_from([str(ws.id), str(uuid.uuid4()), "x", ""]),
        scope=st.integers(min_value=-1, max_value=5),
        target=text,
        reason=text,
        request_id=text,
        action=st.sampled_from(["pause_agent", "resume_agent", "set_budget", "restart_agent", ""]),
        minutes=st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1),
        cents=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
        flag=st.booleans(),
    )
    def build(
        workspace: str,
        scope: int,
        target: str,
        reason: str,
        request_id: str,
        action: str,
        minutes: int | None,
        cents: int | None,
        flag: bool,
    ) -> None:
        request = actions_pb2.ExecuteRequest(
            workspace_id=workspace,
            target_id=target,
            reason=reason,
            request_id=request_id,
            validate_only=True,
        )
        request.scope = scope  # type: ignore[assignment]
        if action == "pause_agent":
            request.pause_agent.indefinite = flag
            if minutes is not None:
                request.pause_agent.duration_minutes = minutes
        elif action == "set_budget":
            request.set_budget.clear = flag
            if cents is not None:
                request.set_budget.monthly_limit_cents = cents
        elif action:
            getattr(request, action).SetInParent()
        requests.append(request)

    build()
    for request in requests:
        try:
            await api.stub.Execute(request, metadata=api.auth("alice"), timeout=5)
        except grpc.aio.AioRpcError as exc:
            d = details(exc)
            assert d.code in EXPECTED, (request, d)
            assert (d.error_infos, d.domain) == (1, "fleetward")
