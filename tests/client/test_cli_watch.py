"""``fleetward watch`` prints one line (or JSON object) per event and exits by error class.

This drives the CLI in-process over grpcio-testing's channel (the test thread plays the
server) to fail the stream at a chosen point; ``test_cli.py`` runs the real watch.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import cli
from fleetward.client.cli.context import Context

from tests.client.fake_channel import WORKSPACE, FakeActionService, status


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "lines"])
def test_watch_prints_events_until_the_stream_fails(
    fake: FakeActionService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    as_json: bool,
) -> None:
    monkeypatch.setattr(Context, "actions", lambda self: fake.client)
    monkeypatch.setattr(fake.client, "close", lambda: None)
    argv = ["watch", "--workspace", WORKSPACE, "--after-seq", "41"] + (
        ["--json"] if as_json else []
    )
    done = fake.start(lambda _client: cli.main(argv))
    stream = fake.take_stream("WatchActions")
    assert stream.request.after_seq == 41
    for seq in (42, 43):
        stream.rpc.send_response(
            actions_pb2.ActionEvent(
                workspace_id=WORKSPACE,
                seq=seq,
                event_type="action.completed",
                action=actions_pb2.Action(action_type="pause_agent", target_id="eng-code-1"),
            )
        )
    printed = ""
    while printed.count("\n") < 2:  # both events reach the CLI before the stream fails
        printed += capsys.readouterr().out
        time.sleep(0.01)
    failure = status(grpc.StatusCode.PERMISSION_DENIED, "INSUFFICIENT_PERMISSIONS")
    stream.rpc.terminate(failure.trailing_metadata, failure.code, failure.details)
    assert done.result(timeout=10) == 4
    captured = capsys.readouterr()
    assert "INSUFFICIENT_PERMISSIONS" in captured.err
    out = (printed + captured.out).splitlines()
    if as_json:
        assert [json.loads(line)["seq"] for line in out] == ["42", "43"]
    else:
        assert [line.split()[0] for line in out] == ["42", "43"]
