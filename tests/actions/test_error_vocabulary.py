"""Stored errors speak our vocabulary: a failed or denied action's ``error_details`` holds
our reason, and the gRPC code comes from the one table (``errors.CODES``), also for rows
written before, which held a code too (docs/DECISIONS.md, "error_details").
"""

from __future__ import annotations

import grpc
import pytest

from services.actions import errors
from services.common.status import ServiceError

STORED = [
    errors.permission_denied("actions:pause_agent", ["viewer"], "v1", denied_agents=["a"]),
    errors.already_in_state("eng-1", "active"),
    errors.rollback_refused("NOT_COMPLETED", "a-1", "action a-1 is failed, not completed"),
    errors.superseded("a-1", {"agent/eng-1": "a-2"}),
    errors.targets_changed("a-1", ["agent/eng-1"]),
    errors.execution_failed("a-1", "boom", "c-1"),
]


def _shape(err: ServiceError) -> tuple[object, ...]:
    return (
        err.code,
        err.reason,
        err.message,
        dict(err.metadata),
        list(err.precondition_violations),
    )


@pytest.mark.parametrize("err", STORED, ids=lambda e: e.reason)
def test_a_stored_error_holds_no_grpc_code_and_reads_back_whole(err: ServiceError) -> None:
    stored = errors.to_json(err)
    assert "code" not in stored
    assert stored["reason"] == err.reason
    assert _shape(errors.from_json(stored)) == _shape(err)


def test_every_reason_has_exactly_its_code() -> None:
    for reason, code in errors.CODES.items():
        assert errors.error(reason, "m").code is code
    with pytest.raises(KeyError):
        errors.error("NO_SUCH_REASON", "m")


def test_rows_written_before_still_read_back() -> None:
    # The earlier form stored the code beside the reason: the table decides for a known
    # reason, the stored code only for a reason this version does not know.
    old = {"code": "FAILED_PRECONDITION", "reason": "SUPERSEDED", "message": "m"}
    assert errors.from_json(old).code is grpc.StatusCode.FAILED_PRECONDITION
    newer = {"code": "ABORTED", "reason": "SOMETHING_NEWER", "message": "m"}
    assert errors.from_json(newer).code is grpc.StatusCode.ABORTED
    garbled = {"code": "NOT_A_CODE", "reason": "SOMETHING_NEWER", "message": "m"}
    assert errors.from_json(garbled).code is grpc.StatusCode.INTERNAL
