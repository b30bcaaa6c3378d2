"""``ActionRecord``: the typed audit row every store function returns."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions import convert
from services.actions.model import COLUMNS, ActionRecord, ActionStatus


def _row(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(
        action_id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        action_type="pause_agent",
        scope="agent",
        target_id="eng-code-1",
        action_params={},
        reason="incident 42",
        actor_user_id="bob",
        actor_role="operator",
        status="completed",
        can_rollback=True,
        request_id="r-1",
        request_fingerprint="f",
        created_at=now,
    )
    row.update(overrides)
    return row


def test_a_record_is_its_row_typed_and_frozen() -> None:
    row = _row(target_found=True, target_status="paused")  # a keyed look-up's extra columns
    record = ActionRecord.from_row(row)
    assert record.status is ActionStatus.COMPLETED
    assert dict(record) == {name: row[name] for name in COLUMNS}
    assert record["reason"] == record.reason == "incident 42"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = ActionStatus.FAILED  # type: ignore[misc]
    with pytest.raises(KeyError):
        record["target_found"]


def test_a_status_from_a_newer_replica_is_kept_and_shown_as_unspecified() -> None:
    record = ActionRecord.from_row(_row(status="quarantined"))
    assert record.status == "quarantined"
    assert convert.action(record).status == actions_pb2.ACTION_STATUS_UNSPECIFIED
