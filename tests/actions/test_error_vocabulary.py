"""Stored errors speak our vocabulary: a failed or denied action's ``error_details`` is
named by our reason, and the gRPC code comes from the one table (``errors.CODES``); the
stored ``code`` (kept for the previous release's replicas) decides nothing for a known
reason (docs/DECISIONS.md, "error_details").
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
def test_a_stored_error_reads_back_whole_from_its_reason(err: ServiceError) -> None:
    stored = errors.to_json(err)
    assert stored["reason"] == err.reason
    assert _shape(errors.from_json(stored)) == _shape(err)
    # The previous release reads the code: it is written, and it is the table's.
    assert stored["code"] == errors.CODES[err.reason].name
    # This version does not read it for a reason it knows.
    assert _shape(errors.from_json({**stored, "code": "OK"})) == _shape(err)


def test_every_reason_has_exactly_its_code() -> None:
    for reason, code in errors.CODES.items():
        assert errors.error(reason, "m").code is code
    with pytest.raises(KeyError):
        errors.error("NO_SUCH_REASON", "m")


def test_the_stored_code_decides_only_for_an_unknown_reason() -> None:
    # The table decides for a known reason; the stored code only for a reason this version
    # does not know (a newer one), and never OK.
    old = {"code": "FAILED_PRECONDITION", "reason": "SUPERSEDED", "message": "m"}
    assert errors.from_json(old).code is grpc.StatusCode.FAILED_PRECONDITION
    newer = {"code": "ABORTED", "reason": "SOMETHING_NEWER", "message": "m"}
    assert errors.from_json(newer).code is grpc.StatusCode.ABORTED
    garbled = {"code": "NOT_A_CODE", "reason": "SOMETHING_NEWER", "message": "m"}
    assert errors.from_json(garbled).code is grpc.StatusCode.INTERNAL
    ok = {"code": "OK", "reason": "SOMETHING_NEWER", "message": "m"}
    assert errors.from_json(ok).code is grpc.StatusCode.INTERNAL
