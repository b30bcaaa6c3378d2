"""The action service's model: its vocabulary as types, the action to record, and what an
effect did.

Statuses, scopes and target kinds are :class:`~enum.StrEnum`s whose values are exactly
what the schema stores (migrations/0001 checks the same sets), so a member is the
column's value, compares equal to it and serialises as it (JSON, asyncpg parameters,
metric labels). See docs/architecture.md §2 for the status machine and §3 for scopes.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from services.actions.audit import documents
from services.actions.db import Row

if TYPE_CHECKING:
    from services.actions.catalog import Change


class ActionStatus(StrEnum):
    """Where an action is in its life (``action_audit_log.status``)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    DENIED = "denied"

    @property
    def is_final(self) -> bool:
        """Whether the action is over (only ``completed → rolled_back`` follows)."""
        return self not in (ActionStatus.PENDING, ActionStatus.IN_PROGRESS)


UNFINISHED = (ActionStatus.PENDING, ActionStatus.IN_PROGRESS)


class AgentStatus(StrEnum):
    """An agent's control state (``agents.status``)."""

    ACTIVE = "active"
    PAUSED = "paused"
    RETIRED = "retired"


class Scope(StrEnum):
    """What an action targets: the whole fleet, a department or one agent."""

    FLEET = "fleet"
    DEPARTMENT = "department"
    AGENT = "agent"


class TargetKind(StrEnum):
    """What one ``action_targets`` row changed."""

    AGENT = "agent"
    BUDGET = "budget"


@dataclass(frozen=True)
class ActionRecord(Mapping[str, Any]):
    """One audit row (``action_audit_log``) as recorded: what the store returns for every
    statement about actions, typed and immutable.

    It also reads as a mapping of its column names, so the canonical-document code
    (:mod:`services.actions.audit.documents`) reads a record, a preview and an event
    payload's row alike; domain code uses the attributes.
    """

    action_id: uuid.UUID
    workspace_id: uuid.UUID
    action_type: str
    scope: str
    target_id: str
    action_params: Any
    reason: str
    actor_user_id: str
    actor_role: str
    # A status this version does not know (written by a newer replica during a rolling
    # deploy) stays its text: reads show it as unspecified rather than fail.
    status: ActionStatus | str
    result: Any
    error_message: str | None
    error_details: Any
    can_rollback: bool
    rollback_action_id: uuid.UUID | None
    rollback_of_action_id: uuid.UUID | None
    request_id: str
    request_fingerprint: str
    policy_version: str | None
    decision_id: str | None
    trace_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    rolled_back_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> ActionRecord:
        """The record of a row with (at least) every column of ``action_audit_log``.

        Built without ``__init__`` (whose frozen per-field assignment costs more than the
        read of a page of rows itself); the record is as immutable as any other.
        """
        record = object.__new__(cls)
        values = record.__dict__
        values.update(zip(COLUMNS, _column_values(row), strict=True))
        status = values["status"]
        values["status"] = _STATUSES.get(status, status)
        return record

    @classmethod
    def maybe(cls, row: Row | None) -> ActionRecord | None:
        """:meth:`from_row`, or None for no row."""
        return None if row is None else cls.from_row(row)

    @property
    def columns(self) -> Mapping[str, Any]:
        """Its columns as a read-only mapping (read at C speed: what converts a page)."""
        return MappingProxyType(self.__dict__)

    def __getitem__(self, column: str) -> Any:
        return self.__dict__[column]

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)


# The columns of action_audit_log.
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ActionRecord))
_column_values = operator.itemgetter(*COLUMNS)
_STATUSES: dict[str, ActionStatus] = {s.value: s for s in ActionStatus}


@dataclass(frozen=True)
class NewAction:
    """The audit row to record."""

    action_id: uuid.UUID
    workspace_id: uuid.UUID
    action_type: str
    scope: str
    target_id: str
    params: dict[str, Any]
    reason: str
    subject: str
    roles: tuple[str, ...]
    can_rollback: bool
    request_id: str
    fingerprint: str
    policy_version: str
    decision_id: str
    rollback_of_action_id: uuid.UUID | None = None
    # The W3C trace id of the request (32 hex digits), None when it came untraced.
    trace_id: str | None = None

    def insert_args(self) -> tuple[Any, ...]:
        """Arguments $1..$16 of INSERT_DENIED, $2..$17 of CLAIM."""
        return (
            self.action_id,
            self.workspace_id,
            self.action_type,
            self.scope,
            self.target_id,
            self.params,
            self.reason,
            self.subject,
            ",".join(self.roles),
            self.can_rollback,
            self.rollback_of_action_id,
            self.request_id,
            self.fingerprint,
            self.policy_version,
            self.decision_id,
            self.trace_id,
        )

    def row(self, status: str, created_at: datetime | None) -> dict[str, Any]:
        """The audit row as recorded with ``status`` (before any later update)."""
        return {
            "action_id": self.action_id,
            "workspace_id": self.workspace_id,
            "action_type": self.action_type,
            "scope": self.scope,
            "target_id": self.target_id,
            "action_params": documents.jsonb_value(self.params),
            "reason": self.reason,
            "actor_user_id": self.subject,
            "actor_role": ",".join(self.roles),
            "status": status,
            "result": None,
            "error_message": None,
            "error_details": None,
            "can_rollback": self.can_rollback,
            "rollback_action_id": None,
            "rollback_of_action_id": self.rollback_of_action_id,
            "request_id": self.request_id,
            "request_fingerprint": self.fingerprint,
            "policy_version": self.policy_version,
            "decision_id": self.decision_id,
            "trace_id": self.trace_id,
            "created_at": created_at,
            "started_at": None,
            "completed_at": None,
            "rolled_back_at": None,
        }

    def preview(self, result: dict[str, Any]) -> dict[str, Any]:
        """The row as it would be recorded (validate_only): nothing is written."""
        return {**self.row(ActionStatus.PENDING, None), "action_id": None, "result": result}


@dataclass
class Outcome:
    """What an effect did: the ``result`` and any events of other rows it changed."""

    result: dict[str, Any]
    events: list[tuple[uuid.UUID, str, dict[str, Any]]] = field(default_factory=list)
    # action_targets rows to write with the completed status (one statement with it).
    changes: Sequence[Change] = ()
