"""One JSON line per decision, to the configured sink."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetward.policy.v1 import policy_pb2

from services.policy import decision_log
from tests.policy.conftest import AGENT, DEMO_WS, RunningPolicy

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


@pytest.fixture
def restore_decision_logger() -> Iterator[None]:
    logger = logging.getLogger(decision_log.LOGGER_NAME)
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        logger.addHandler(handler)
    logger.propagate, logger.level = propagate, level


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
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
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
async def test_decision_log_can_be_turned_off(demo: RunningPolicy, tmp_path: Path) -> None:
    decision_log.configure("off")
    logger = logging.getLogger(decision_log.LOGGER_NAME)
    assert not logger.isEnabledFor(logging.INFO)
    assert (await demo.check("bob", "actions:read", AGENT)).allowed
