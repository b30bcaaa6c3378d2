"""The sync client maps every status and ErrorInfo reason to its exception, details decoded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    FleetwardError,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

from tests.client.fake_channel import (
    ACTION_ID,
    WORKSPACE,
    FakeActionService,
    fake_service,
    status,
)

NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Case:
    code: grpc.StatusCode
    reason: str
    expected: type[FleetwardError]
    metadata: dict[str, str] = field(default_factory=dict)
    fields: tuple[tuple[str, str], ...] = ()
    preconditions: tuple[tuple[str, str, str], ...] = ()


LATER = "5e5e0000-0000-4000-8000-000000000007"
CASES = [
    Case(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", Unauthenticated),
    Case(
        grpc.StatusCode.PERMISSION_DENIED,
        "INSUFFICIENT_PERMISSIONS",
        PermissionDenied,
        metadata={
            "required_permission": "actions:pause_agent",
            "user_role": "viewer",
            "policy_version": "abc123",
        },
    ),
    Case(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        InvalidArgument,
        fields=(("reason", "must be 3..1000 characters"), ("target_id", "unknown format")),
    ),
    Case(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", NotFound),
    Case(grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED", AlreadyExists),
    Case(grpc.StatusCode.ABORTED, "REQUEST_IN_PROGRESS", Aborted),
    Case(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_IN_STATE", FailedPrecondition),
    Case(grpc.StatusCode.FAILED_PRECONDITION, "NOT_ROLLBACKABLE", FailedPrecondition),
    Case(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_ROLLED_BACK", FailedPrecondition),
    Case(grpc.StatusCode.FAILED_PRECONDITION, "NOT_COMPLETED", FailedPrecondition),
    Case(
        grpc.StatusCode.FAILED_PRECONDITION,
        "SUPERSEDED",
        FailedPrecondition,
        preconditions=(("SUPERSEDED", LATER, "eng-code-1 was changed by a later action"),),
    ),
    Case(grpc.StatusCode.UNAVAILABLE, "POLICY_UNAVAILABLE", Unavailable),
    Case(grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE", Unavailable),
    Case(
        grpc.StatusCode.INTERNAL,
        "ACTION_EXECUTION_FAILED",
        Internal,
        metadata={"action_id": ACTION_ID},
    ),
    Case(grpc.StatusCode.UNIMPLEMENTED, "UNIMPLEMENTED", Unimplemented),
]


@pytest.fixture
def no_retry_fake() -> Iterator[FakeActionService]:
    yield from fake_service(retry=NO_RETRIES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.code.name}-{c.reason}")
def test_status_with_error_info_becomes_its_exception(
    no_retry_fake: FakeActionService, case: Case
) -> None:
    future = no_retry_fake.start(
        lambda c: c.get_action(workspace_id=WORKSPACE, action_id=ACTION_ID)
    )
    no_retry_fake.take("GetAction").fail(
        status(
            case.code,
            case.reason,
            metadata=case.metadata,
            fields=case.fields,
            preconditions=case.preconditions,
        )
    )
    with pytest.raises(FleetwardError) as raised:
        future.result(timeout=10)
    error = raised.value
    assert type(error) is case.expected
    assert not isinstance(error, grpc.RpcError)
    assert error.code == case.code
    assert error.reason == case.reason
    assert error.domain == "fleetward"
    assert error.message == f"{case.reason.lower()} happened"
    assert dict(error.metadata) == case.metadata
    assert error.action_id == case.metadata.get("action_id")
    assert error.field_violations == tuple(FieldViolation(f, d) for f, d in case.fields)
    assert error.precondition_violations == tuple(
        PreconditionViolation(*p) for p in case.preconditions
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
        (grpc.StatusCode.UNKNOWN, Internal),
        (grpc.StatusCode.DATA_LOSS, Internal),
        (grpc.StatusCode.OUT_OF_RANGE, InvalidArgument),
    ],
)
def test_grpc_own_status_without_details_maps_by_code(
    no_retry_fake: FakeActionService, code: grpc.StatusCode, expected: type[FleetwardError]
) -> None:
    future = no_retry_fake.start(lambda c: c.get_agent(workspace_id=WORKSPACE, agent_id="a-1"))
    no_retry_fake.take("GetAgent").rpc.terminate(None, (), code, "transport says no")
    with pytest.raises(expected) as raised:
        future.result(timeout=10)
    assert raised.value.code == code
    assert raised.value.reason == ""
    assert raised.value.message == "transport says no"
    assert raised.value.metadata == {}


def test_corrupt_details_trailer_still_maps_by_code(no_retry_fake: FakeActionService) -> None:
    future = no_retry_fake.start(lambda c: c.get_agent(workspace_id=WORKSPACE, agent_id="a-1"))
    no_retry_fake.take("GetAgent").rpc.terminate(
        None,
        (("grpc-status-details-bin", b"\xff\x00not a status"),),
        grpc.StatusCode.NOT_FOUND,
        "no such agent",
    )
    with pytest.raises(NotFound) as raised:
        future.result(timeout=10)
    assert raised.value.message == "no such agent"


def test_streaming_error_is_decoded_too(no_retry_fake: FakeActionService) -> None:
    future = no_retry_fake.start(
        lambda c: list(c.watch_actions(workspace_id=WORKSPACE, max_reconnects=0))
    )
    denied = status(
        grpc.StatusCode.PERMISSION_DENIED,
        "INSUFFICIENT_PERMISSIONS",
        metadata={"required_permission": "actions:read"},
    )
    no_retry_fake.take_stream("WatchActions").rpc.terminate(
        denied.trailing_metadata, denied.code, denied.details
    )
    with pytest.raises(PermissionDenied) as raised:
        future.result(timeout=10)
    assert raised.value.metadata["required_permission"] == "actions:read"


def test_pages_are_followed_until_the_last_token(fake: FakeActionService) -> None:
    future = fake.start(
        lambda c: [a.action_id for a in c.list_actions(workspace_id=WORKSPACE, page_size=2)]
    )
    first = fake.take("ListActions")
    assert first.request.page_size == 2
    assert first.request.page_token == ""
    first.ok(
        actions_pb2.ListActionsResponse(
            actions=[actions_pb2.Action(action_id="a"), actions_pb2.Action(action_id="b")],
            next_page_token="page-2",
        )
    )
    second = fake.take("ListActions")
    assert second.request.page_token == "page-2"
    second.ok(actions_pb2.ListActionsResponse(actions=[actions_pb2.Action(action_id="c")]))
    assert future.result(timeout=10) == ["a", "b", "c"]
