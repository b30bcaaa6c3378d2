"""CheckResources: one subject and permission over up to 20,000 paths, one snapshot, only
the denials, one decision id and one decision-log line for the batch."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from fleetward.policy.v1 import policy_pb2

from services.policy import decision_log
from tests.conftest import Secrets
from tests.policy.conftest import DEMO_WS, RunningPolicy, bearer
from tests.policy.test_decision_log import read_lines

ENGINEERING = "fleet/departments/engineering"
REVIEW = f"{ENGINEERING}/agents/eng-review-1"
CODE = f"{ENGINEERING}/agents/eng-code-1"
DENY_LINE = (
    "p, operator, *, fleet/departments/engineering/agents/eng-review-*, actions:pause_agent, deny"
)


def _request(subject: str, action: str, resources: list[str]) -> policy_pb2.CheckResourcesRequest:
    return policy_pb2.CheckResourcesRequest(
        subject=subject, workspace_id=DEMO_WS, action=action, resources=resources
    )


async def test_only_denials_are_listed_with_their_index_reason_and_rule(
    demo: RunningPolicy,
) -> None:
    resources = [ENGINEERING, CODE, REVIEW, "fleet", REVIEW]
    reply = await demo.stub.CheckResources(
        _request("bob", "actions:pause_agent", resources), metadata=demo.metadata
    )
    assert reply.allowed_count == 2
    assert [(d.index, d.resource) for d in reply.denied] == [(2, REVIEW), (3, "fleet"), (4, REVIEW)]
    review, fleet, _ = reply.denied
    assert review.reason == policy_pb2.DECISION_REASON_EXPLICIT_DENY
    assert review.matched_rule == DENY_LINE
    assert fleet.reason == policy_pb2.DECISION_REASON_NO_MATCHING_RULE
    assert fleet.matched_rule == ""
    assert list(reply.roles) == ["operator", "viewer"]
    info = await demo.info()
    assert reply.policy_version == info.policy_version
    # The same answers as one Check each.
    for index, resource in enumerate(resources):
        single = await demo.check("bob", "actions:pause_agent", resource)
        assert single.allowed == (index not in {d.index for d in reply.denied})


async def test_a_subject_without_a_role_is_denied_everywhere(demo: RunningPolicy) -> None:
    reply = await demo.stub.CheckResources(
        _request("mallory", "actions:read", ["fleet", CODE]), metadata=demo.metadata
    )
    assert reply.allowed_count == 0
    assert {d.reason for d in reply.denied} == {policy_pb2.DECISION_REASON_UNKNOWN_WORKSPACE}
    assert list(reply.roles) == []


async def test_twenty_thousand_longest_paths_are_decided_and_one_more_is_refused(
    demo: RunningPolicy,
) -> None:
    longest = [f"fleet/departments/{'d' * 64}/agents/{i:064d}" for i in range(20_000)]
    reply = await demo.stub.CheckResources(
        _request("alice", "actions:pause_agent", longest), metadata=demo.metadata
    )
    assert (reply.allowed_count, len(reply.denied)) == (20_000, 0)
    denied = await demo.stub.CheckResources(
        _request("carol", "actions:pause_agent", longest), metadata=demo.metadata
    )
    assert len(denied.denied) == 20_000  # every denial answered (a 16 MiB response limit)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await demo.stub.CheckResources(
            _request("alice", "actions:read", [*longest, "fleet"]), metadata=demo.metadata
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1..20000" in (err.value.details() or "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_request("bob", "actions:pause_agent", []), "resources"),
        (_request("bob", "actions:*", ["fleet"]), "action"),
        (_request("", "actions:read", ["fleet"]), "subject"),
        (_request("bob", "actions:read", ["fleet", "fleet/**", "../x"]), "resources[1]"),
    ],
)
async def test_malformed_requests_are_invalid_argument(
    demo: RunningPolicy, request_: policy_pb2.CheckResourcesRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await demo.stub.CheckResources(request_, metadata=demo.metadata)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "") or field in str(err.value.trailing_metadata())


async def test_many_bad_paths_are_named_a_few_at_a_time(demo: RunningPolicy) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await demo.stub.CheckResources(
            _request("bob", "actions:read", ["fleet/x"] * 5_000), metadata=demo.metadata
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(dict(err.value.trailing_metadata() or ())["grpc-status-details-bin"]) < 4000


async def test_only_service_callers_may_ask(demo: RunningPolicy, dev_secrets: Secrets) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await demo.stub.CheckResources(
            _request("bob", "actions:read", ["fleet"]),
            metadata=bearer(dev_secrets.user_token("bob")),
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.usefixtures("restore_decision_logger")
async def test_one_decision_log_line_for_the_batch_with_counts(
    demo: RunningPolicy, tmp_path: Path
) -> None:
    sink = tmp_path / "decisions.jsonl"
    decision_log.configure(str(sink))
    resources = [CODE, REVIEW] * 150
    reply = await demo.stub.CheckResources(
        _request("bob", "actions:pause_agent", resources), metadata=demo.metadata
    )
    assert decision_log.flush()
    [line] = read_lines(sink)
    assert line["decision_id"] == reply.decision_id
    assert (line["resources"], line["allowed_count"], line["denied_count"]) == (300, 150, 150)
    assert line["allowed"] is False
    assert len(line["denied"]) == decision_log.BATCH_DENIED_LISTED
    assert line["denied"][0] == {"resource": REVIEW, "reason": "EXPLICIT_DENY"}
    assert (line["caller"], line["subject"], line["action"]) == (
        "svc:actions",
        "bob",
        "actions:pause_agent",
    )
    assert line["policy_version"] == reply.policy_version
