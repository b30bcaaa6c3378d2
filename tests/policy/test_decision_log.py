"""One JSON line per decision, to the configured sink."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import prometheus_client
import pytest
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.policy import decision_log, decision_writer
from services.policy.engine import Decision, Reason
from tests.conftest import Secrets
from tests.policy.conftest import AGENT, DEMO_WS, RunningPolicy, StartPolicy, bearer
from tests.policy.test_serve import start_policy

FIELDS = {
    "decision_id",
    "time",
    "caller",
    "subject",
    "workspace",
    "action",
    "resource",
    "allowed",
    "reason",
    "policy_version",
    "latency_us",
}


def record(n: int) -> None:
    """Record one synthetic decision whose ``latency_us`` is ``n``."""
    decision_log.record(
        decision_id=str(uuid.uuid4()),
        caller="svc:test",
        subject="bob",
        workspace=DEMO_WS,
        action="actions:read",
        resource="fleet",
        decision=Decision(True, Reason.ALLOWED),
        policy_version="v1",
        latency_us=n,
    )


def read_lines(sink: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``sink`` (each must be a complete line)."""
    text = sink.read_text() if sink.exists() else ""
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def dropped() -> float:
    """The current value of ``fleetward_policy_decision_log_dropped_total``."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "fleetward_policy_decision_log_dropped_total"
    )
    assert value is not None
    return value


@pytest.mark.usefixtures("restore_decision_logger")
async def test_each_decision_is_one_json_line(demo: RunningPolicy, tmp_path: Path) -> None:
    sink = tmp_path / "decisions.jsonl"
    decision_log.configure(str(sink))
    allowed = await demo.check("bob", "actions:pause_agent", AGENT)
    denied = await demo.check("carol", "actions:pause_agent", AGENT)
    batch = await demo.stub.BatchCheck(
        policy_pb2.BatchCheckRequest(
            checks=[
                policy_pb2.CheckRequest(
                    subject="dana", workspace_id=DEMO_WS, action="actions:read", resource="fleet"
                )
            ]
            * 2
        ),
        metadata=demo.metadata,
    )
    assert decision_log.flush()
    lines = read_lines(sink)
    assert len(lines) == 4
    assert all(set(line) == FIELDS for line in lines)
    first, second = lines[0], lines[1]
    assert first["decision_id"] == allowed.decision_id
    assert uuid.UUID(first["decision_id"])
    assert first["caller"] == "svc:actions"
    assert (first["subject"], first["action"], first["resource"]) == (
        "bob",
        "actions:pause_agent",
        AGENT,
    )
    assert first["workspace"] == DEMO_WS
    assert first["allowed"] is True
    assert first["reason"] == "ALLOWED"
    assert first["policy_version"] == allowed.policy_version
    assert isinstance(first["latency_us"], int)
    assert second["decision_id"] == denied.decision_id
    assert second["allowed"] is False
    assert second["reason"] == "NO_MATCHING_RULE"
    assert [line["decision_id"] for line in lines[2:]] == [r.decision_id for r in batch.results]


@pytest.mark.usefixtures("restore_decision_logger")
async def test_decision_log_can_be_turned_off(
    demo: RunningPolicy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = tmp_path / "decisions.jsonl"
    decision_log.configure(str(sink))
    first = await demo.check("bob", "actions:read", AGENT)
    decision_log.configure("off")  # flushes and closes the file sink
    assert not decision_log.enabled()
    assert (await demo.check("bob", "actions:read", AGENT)).allowed
    record(1)
    assert decision_log.flush()
    assert [line["decision_id"] for line in read_lines(sink)] == [first.decision_id]
    out, err = capsys.readouterr()
    assert "decision_id" not in out + err


@pytest.mark.usefixtures("restore_decision_logger")
async def test_lines_are_complete_after_the_server_stops(
    start_policy: StartPolicy, tmp_path: Path
) -> None:
    sink = tmp_path / "decisions.jsonl"
    decision_log.configure(str(sink))
    async with start_policy() as running:
        ids = [(await running.check("bob", "actions:read", AGENT)).decision_id for _ in range(20)]
        batch = await running.stub.BatchCheck(
            policy_pb2.BatchCheckRequest(
                checks=[
                    policy_pb2.CheckRequest(
                        subject="dana",
                        workspace_id=DEMO_WS,
                        action="actions:read",
                        resource="fleet",
                    )
                ]
                * 50
            ),
            metadata=running.metadata,
        )
        ids += [result.decision_id for result in batch.results]
    # PolicyServer.stop flushed the log: no waiting, no explicit flush here.
    lines = read_lines(sink)
    assert [line["decision_id"] for line in lines] == ids
    assert all(set(line) == FIELDS for line in lines)


@pytest.mark.usefixtures("restore_decision_logger")
def test_stop_writes_every_line_in_order(tmp_path: Path) -> None:
    sink = tmp_path / "decisions.jsonl"
    decision_log.configure(str(sink))
    for n in range(5000):
        record(n)
    assert decision_log.stop()
    assert [line["latency_us"] for line in read_lines(sink)] == list(range(5000))
    record(5000)  # stopped: not logged
    assert len(read_lines(sink)) == 5000


@pytest.mark.usefixtures("restore_decision_logger")
def test_lines_are_written_shortly_without_a_flush(tmp_path: Path) -> None:
    sink = tmp_path / "decisions.jsonl"
    decision_log.configure(str(sink))
    record(7)
    deadline = time.monotonic() + 2.0
    while not read_lines(sink) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [line["latency_us"] for line in read_lines(sink)] == [7]


@pytest.mark.usefixtures("restore_decision_logger")
def test_stdout_sink(capsys: pytest.CaptureFixture[str]) -> None:
    decision_log.configure("stdout")
    record(3)
    record(4)
    assert decision_log.flush()
    out, err = capsys.readouterr()
    assert [json.loads(line)["latency_us"] for line in out.splitlines()] == [3, 4]
    assert err == ""


class StuckStream(io.StringIO):
    """A sink whose writes block until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, s: str) -> int:
        self.entered.set()
        self.release.wait()
        return super().write(s)


@pytest.mark.usefixtures("restore_decision_logger")
def test_a_stuck_sink_drops_and_counts_instead_of_blocking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decision_writer, "BUFFER_LINES", 10)
    stream = StuckStream()
    monkeypatch.setattr(
        decision_log, "_writer", decision_writer.DecisionWriter(stream, owns_stream=False)
    )
    record(0)
    assert stream.entered.wait(2.0)  # the writer took line 0 and is stuck writing it
    before = dropped()
    started = time.monotonic()
    for n in range(1, 21):
        record(n)  # 10 fit in the buffer, 10 are dropped
    assert time.monotonic() - started < 0.5
    assert dropped() - before == 10
    stream.release.set()
    assert decision_log.flush()
    written = [json.loads(line)["latency_us"] for line in stream.getvalue().splitlines()]
    assert written == list(range(11))
    assert decision_log.stop()


async def test_sigterm_writes_every_line_before_exiting(
    policy_copy: Path, dev_secrets: Secrets, tmp_path: Path
) -> None:
    sink = tmp_path / "decisions.jsonl"
    proc = start_policy(
        policy_copy, dev_secrets, tmp_path / "policy.log", FLEETWARD_POLICY_DECISION_LOG=str(sink)
    )
    try:
        await proc.wait_for_port_async(60)
        async with grpc.aio.insecure_channel(proc.target) as channel:
            stub: Any = policy_pb2_grpc.PolicyServiceStub(channel)
            metadata = bearer(dev_secrets.service_token())
            request = policy_pb2.CheckRequest(
                subject="bob", workspace_id=DEMO_WS, action="actions:read", resource=AGENT
            )
            ids = [(await stub.Check(request, metadata=metadata)).decision_id for _ in range(30)]
        proc.send_signal(signal.SIGTERM)  # right away: lines may still be buffered
        assert await proc.wait_async(30) == 0
        assert [line["decision_id"] for line in read_lines(sink)] == ids
    finally:
        await proc.stop_async()
