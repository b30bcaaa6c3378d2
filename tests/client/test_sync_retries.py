"""Safe retries: one request_id per logical call, reused on every attempt."""

from __future__ import annotations

import itertools
import time
import uuid
from concurrent.futures import Future

import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import (
    Aborted,
    ClientConfig,
    PauseAgent,
    PermissionDenied,
    ResumeAgent,
    RetryPolicy,
    Unavailable,
)
from fleetward.client import errors as client_errors
from fleetward.client._core import Attempts, Retry
from fleetward.client.errors import Unavailable as UnavailableError

from tests.client.fake_channel import (
    ACTION_ID,
    WORKSPACE,
    FakeActionService,
    fake_service,
    status,
)

UNAVAILABLE = status(grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
IN_PROGRESS = status(grpc.StatusCode.ABORTED, "REQUEST_IN_PROGRESS")


def _pause(fake: FakeActionService) -> Future[actions_pb2.Action]:
    return fake.start(
        lambda c: c.execute(
            workspace_id=WORKSPACE,
            scope="agent",
            target_id="eng-code-1",
            reason="runaway spend",
            params=PauseAgent(duration_minutes=30),
        )
    )


@pytest.mark.parametrize(
    "first_failure", [UNAVAILABLE, IN_PROGRESS], ids=["unavailable", "in-progress"]
)
def test_execute_retry_reuses_the_request_id(
    fake: FakeActionService, first_failure: grpc.Status
) -> None:
    future = _pause(fake)
    first = fake.take("Execute")
    first.fail(first_failure)
    second = fake.take("Execute")
    second.ok(actions_pb2.Action(action_id=ACTION_ID, request_id=second.request.request_id))

    action = future.result(timeout=10)
    assert action.action_id == ACTION_ID
    assert first.request.request_id == second.request.request_id
    assert uuid.UUID(first.request.request_id).version == 4
    assert first.request == second.request
    assert second.request.pause_agent.duration_minutes == 30
    assert second.request.scope == actions_pb2.SCOPE_AGENT


def test_rollback_retry_reuses_the_request_id(fake: FakeActionService) -> None:
    future = fake.start(
        lambda c: c.rollback(workspace_id=WORKSPACE, action_id=ACTION_ID, reason="undo it")
    )
    first = fake.take("Rollback")
    first.fail(UNAVAILABLE)
    second = fake.take("Rollback")
    second.ok(actions_pb2.Action(action_type="rollback"))
    assert future.result(timeout=10).action_type == "rollback"
    assert first.request.request_id
    assert first.request.request_id == second.request.request_id


def test_each_logical_execute_gets_its_own_request_id(fake: FakeActionService) -> None:
    ids = []
    for _ in range(2):
        future = _pause(fake)
        taken = fake.take("Execute")
        taken.ok(actions_pb2.Action())
        future.result(timeout=10)
        ids.append(taken.request.request_id)
    assert ids[0] != ids[1]


def test_a_given_request_id_is_sent_as_is(fake: FakeActionService) -> None:
    future = fake.start(
        lambda c: c.execute(
            workspace_id=WORKSPACE,
            scope=actions_pb2.SCOPE_FLEET,
            reason="resume all",
            params=ResumeAgent(),
            request_id="deploy-42:resume",
            validate_only=True,
        )
    )
    taken = fake.take("Execute")
    taken.ok(actions_pb2.Action())
    future.result(timeout=10)
    assert taken.request.request_id == "deploy-42:resume"
    assert taken.request.validate_only
    assert taken.request.WhichOneof("params") == "resume_agent"


def test_permission_denied_is_not_retried(fake: FakeActionService) -> None:
    future = _pause(fake)
    fake.take("Execute").fail(status(grpc.StatusCode.PERMISSION_DENIED, "INSUFFICIENT_PERMISSIONS"))
    with pytest.raises(PermissionDenied):
        future.result(timeout=10)


def test_reads_do_not_retry_request_in_progress(fake: FakeActionService) -> None:
    future = fake.start(lambda c: c.get_action(workspace_id=WORKSPACE, action_id=ACTION_ID))
    fake.take("GetAction").fail(IN_PROGRESS)
    with pytest.raises(Aborted):
        future.result(timeout=10)


def test_reads_retry_unavailable(fake: FakeActionService) -> None:
    future = fake.start(lambda c: c.get_agent(workspace_id=WORKSPACE, agent_id="eng-code-1"))
    fake.take("GetAgent").fail(UNAVAILABLE)
    fake.take("GetAgent").ok(actions_pb2.Agent(agent_id="eng-code-1"))
    assert future.result(timeout=10).agent_id == "eng-code-1"


def test_one_page_and_an_actions_events_are_reads(fake: FakeActionService) -> None:
    page = fake.start(
        lambda c: c.list_actions_page(
            workspace_id=WORKSPACE, status="denied", page_size=3, page_token="page-2"
        )
    )
    fake.take("ListActions").fail(UNAVAILABLE)
    retried = fake.take("ListActions")
    assert retried.request.page_token == "page-2"
    assert retried.request.page_size == 3
    assert retried.request.status == actions_pb2.ACTION_STATUS_DENIED
    retried.ok(actions_pb2.ListActionsResponse(next_page_token="page-3"))
    assert page.result(timeout=10).next_page_token == "page-3"

    events = fake.start(lambda c: c.list_action_events(workspace_id=WORKSPACE, action_id=ACTION_ID))
    fake.take("ListActionEvents").fail(UNAVAILABLE)
    asked = fake.take("ListActionEvents")
    assert (asked.request.workspace_id, asked.request.action_id) == (WORKSPACE, ACTION_ID)
    asked.ok(
        actions_pb2.ListActionEventsResponse(
            events=[actions_pb2.ActionEvent(seq=1), actions_pb2.ActionEvent(seq=2)]
        )
    )
    assert [e.seq for e in events.result(timeout=10)] == [1, 2]


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    for fake in fake_service(retry=RetryPolicy(max_attempts=3, initial_backoff=0.001)):
        future = _pause(fake)
        for _ in range(3):
            fake.take("Execute").fail(UNAVAILABLE)
        with pytest.raises(Unavailable) as raised:
            future.result(timeout=10)
        assert raised.value.reason == "DATABASE_UNAVAILABLE"


def test_token_provider_is_asked_before_every_attempt() -> None:
    tokens = (f"token-{n}" for n in itertools.count(1))
    for fake in fake_service(token=lambda: next(tokens)):
        future = _pause(fake)
        first = fake.take("Execute")
        first.fail(UNAVAILABLE)
        second = fake.take("Execute")
        second.ok(actions_pb2.Action())
        future.result(timeout=10)
        assert first.metadata["authorization"] == "Bearer token-1"
        assert second.metadata["authorization"] == "Bearer token-2"


def test_each_attempt_gets_the_remaining_deadline() -> None:
    attempts = Attempts(ClientConfig(default_deadline=30.0), deadline=None)
    first = attempts.start()
    second = attempts.start()
    assert first is not None
    assert second is not None
    assert 0 < second <= first <= 30.0
    overridden = Attempts(ClientConfig(default_deadline=30.0), deadline=2.0).start()
    assert overridden is not None
    assert overridden <= 2.0
    assert Attempts(ClientConfig(default_deadline=None), deadline=None).start() is None


def test_no_retry_whose_backoff_would_outlast_the_deadline() -> None:
    slow = RetryPolicy(max_attempts=10, initial_backoff=60.0, max_backoff=60.0, jitter=0.0)
    attempts = Attempts(ClientConfig(retry=slow), deadline=5.0)
    attempts.start()
    assert attempts.delay_before_retry(UnavailableError("down"), Retry.READ) is None
    roomy = Attempts(ClientConfig(retry=slow, default_deadline=None), deadline=None)
    roomy.start()
    assert roomy.delay_before_retry(UnavailableError("down"), Retry.READ) == 60.0


def test_a_backoff_that_overran_the_deadline_raises_the_last_error() -> None:
    # delay_before_retry allowed the wait, but the sleep ended after the deadline (a busy
    # event loop or machine): the retry is not attempted and the caller gets the real
    # failure, not a DEADLINE_EXCEEDED the server never sent.
    quick = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.01, jitter=0.0)
    attempts = Attempts(ClientConfig(retry=quick), deadline=0.05)
    attempts.start()
    down = UnavailableError("down")
    assert attempts.delay_before_retry(down, Retry.READ) == 0.01
    time.sleep(0.06)
    with pytest.raises(UnavailableError) as info:
        attempts.start()
    assert info.value is down


def test_the_first_attempt_after_the_deadline_is_deadline_exceeded() -> None:
    attempts = Attempts(ClientConfig(), deadline=0.0)
    with pytest.raises(client_errors.DeadlineExceeded):
        attempts.start()


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.5, multiplier=2.0, jitter=0.0)
    assert [policy.backoff(n) for n in range(1, 5)] == pytest.approx([0.1, 0.2, 0.4, 0.5])
    jittered = RetryPolicy(initial_backoff=1.0, max_backoff=1.0, jitter=0.5)
    assert all(0.5 <= jittered.backoff(1) <= 1.0 for _ in range(100))
