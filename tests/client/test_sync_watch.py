"""watch_actions resumes after the last seen seq when the stream breaks or ends."""

from __future__ import annotations

import queue
from concurrent.futures import Future

import grpc
from fleetward.actions.v1 import actions_pb2
from fleetward.client import ActionsClient

from tests.client.fake_channel import WORKSPACE, FakeActionService, Taken, status


def _send(stream: Taken, *seqs: int) -> None:
    for seq in seqs:
        stream.rpc.send_response(
            actions_pb2.ActionEvent(workspace_id=WORKSPACE, seq=seq, event_type="action.completed")
        )


def _watch(
    fake: FakeActionService, after_seq: int, count: int, *, live_only: bool = False
) -> tuple[Future[None], queue.Queue[int]]:
    """Consume ``count`` events in the worker, reporting each seq as it is processed."""
    seen: queue.Queue[int] = queue.Queue()

    def consume(client: ActionsClient) -> None:
        events = client.watch_actions(
            workspace_id=WORKSPACE, after_seq=after_seq, live_only=live_only
        )
        for processed, event in enumerate(events, start=1):
            seen.put(event.seq)
            if processed == count:
                break

    return fake.start(consume), seen


def test_watch_resumes_after_unavailable_from_the_last_seq(fake: FakeActionService) -> None:
    done, seen = _watch(fake, after_seq=4, count=3)
    first = fake.take_stream("WatchActions")
    assert first.request.after_seq == 4
    assert first.metadata["authorization"] == "Bearer test-token"
    _send(first, 5, 6)
    assert [seen.get(timeout=10), seen.get(timeout=10)] == [5, 6]
    down = status(grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
    first.rpc.terminate(down.trailing_metadata, down.code, down.details)

    second = fake.take_stream("WatchActions")
    assert second.request.workspace_id == WORKSPACE
    assert second.request.after_seq == 6
    _send(second, 7)
    done.result(timeout=10)
    assert seen.get(timeout=10) == 7


def test_watch_reconnects_when_the_server_ends_the_stream(fake: FakeActionService) -> None:
    done, seen = _watch(fake, after_seq=0, count=2)
    first = fake.take_stream("WatchActions")
    assert first.request.after_seq == 0
    _send(first, 1)
    assert seen.get(timeout=10) == 1
    first.rpc.terminate((), grpc.StatusCode.OK, "")  # graceful shutdown ends the stream

    second = fake.take_stream("WatchActions")
    assert second.request.after_seq == 1
    _send(second, 2)
    done.result(timeout=10)
    assert seen.get(timeout=10) == 2


def test_live_only_is_asked_again_until_an_event_then_resumes_from_its_seq(
    fake: FakeActionService,
) -> None:
    done, seen = _watch(fake, after_seq=0, count=2, live_only=True)
    first = fake.take_stream("WatchActions")
    assert (first.request.after_seq, first.request.live_only) == (0, True)
    down = status(grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
    first.rpc.terminate(down.trailing_metadata, down.code, down.details)

    # Nothing was yielded yet: still "from now on".
    second = fake.take_stream("WatchActions")
    assert (second.request.after_seq, second.request.live_only) == (0, True)
    _send(second, 41)
    assert seen.get(timeout=10) == 41
    second.rpc.terminate((), grpc.StatusCode.OK, "")

    # After an event: from its seq, history included, so nothing appended meanwhile is lost.
    third = fake.take_stream("WatchActions")
    assert third.request.workspace_id == WORKSPACE
    assert (third.request.after_seq, third.request.live_only) == (41, False)
    _send(third, 42)
    done.result(timeout=10)
    assert seen.get(timeout=10) == 42
