"""Request validation → ``BadRequest`` field violations (nothing is read or written before it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fleetward.actions.v1 import actions_pb2

from services.actions import catalog
from services.actions.catalog import ActionKind
from services.actions.model import Scope
from services.common.names import ID_PATTERN, ID_RULE, REQUEST_ID_PATTERN
from services.common.status import FieldViolation, invalid_argument
from services.common.text import text_problem, visible_length

REASON_MIN, REASON_MAX = 3, 1000
SCOPE_NAMES = {
    actions_pb2.SCOPE_FLEET: Scope.FLEET,
    actions_pb2.SCOPE_DEPARTMENT: Scope.DEPARTMENT,
    actions_pb2.SCOPE_AGENT: Scope.AGENT,
}
# By the stored text too (a row's scope is a str; a Scope member equals its value).
SCOPE_VALUES: dict[str, actions_pb2.Scope.ValueType] = {
    name: value for value, name in SCOPE_NAMES.items()
}


@dataclass(frozen=True)
class ExecuteCommand:
    """A validated ExecuteRequest."""

    workspace_id: uuid.UUID
    scope: str
    target_id: str
    reason: str
    request_id: str
    validate_only: bool
    kind: ActionKind[Any]
    params: Any  # the params message of ``kind``
    skip_denied: bool = False

    @property
    def params_json(self) -> dict[str, Any]:
        """The params as stored."""
        return self.kind.params_json(self.params)


@dataclass(frozen=True)
class RollbackCommand:
    """A validated RollbackRequest."""

    workspace_id: uuid.UUID
    action_id: uuid.UUID
    reason: str
    request_id: str
    validate_only: bool
    skip_superseded: bool
    skip_denied: bool = False


MAX_ACCESS_TARGETS = 500


@dataclass(frozen=True)
class AccessCommand:
    """A validated CheckAccessRequest: the workspace and (scope, target_id) pairs."""

    workspace_id: uuid.UUID
    targets: tuple[tuple[str, str], ...]


def parse_uuid(value: str, field: str, out: list[FieldViolation]) -> uuid.UUID:
    """A UUID field; appends a violation and returns the nil UUID when malformed."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        out.append(FieldViolation(field, "must be a UUID"))
        return uuid.UUID(int=0)
    if str(parsed) != value.lower():
        out.append(FieldViolation(field, "must be a UUID in canonical form"))
    return parsed


def check_id(value: str, field: str, out: list[FieldViolation], *, required: bool = True) -> None:
    """An agent or department id (``^[a-z0-9][a-z0-9._-]{0,63}$``)."""
    if not value and not required:
        return
    if not ID_PATTERN.fullmatch(value):
        out.append(FieldViolation(field, ID_RULE))


def _check_reason(reason: str, out: list[FieldViolation]) -> None:
    """A reason people can read: docs/architecture.md §4 (services/common/text.py)."""
    if len(reason) > REASON_MAX or visible_length(reason) < REASON_MIN:
        out.append(
            FieldViolation(
                "reason",
                f"required: at most {REASON_MAX} characters, at least {REASON_MIN} of them "
                "visible (not spaces or blank fillers)",
            )
        )
        return
    problem = text_problem(reason)
    if problem is not None:
        out.append(FieldViolation("reason", problem))


def _check_request_id(request_id: str, out: list[FieldViolation]) -> None:
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        out.append(FieldViolation("request_id", "required, 1..128 characters of [A-Za-z0-9._:-]"))


def _check_target(scope_value: int, target_id: str, prefix: str, out: list[FieldViolation]) -> str:
    """The scope's name ("" when invalid), with the target id checked against it."""
    scope = SCOPE_NAMES.get(actions_pb2.Scope.ValueType(scope_value), "")
    if not scope:
        out.append(
            FieldViolation(prefix + "scope", "must be SCOPE_FLEET, SCOPE_DEPARTMENT or SCOPE_AGENT")
        )
    if scope == Scope.FLEET:
        if target_id:
            out.append(FieldViolation(prefix + "target_id", "must be empty at fleet scope"))
    elif scope:
        check_id(target_id, prefix + "target_id", out)
    return scope


def validate_execute(request: actions_pb2.ExecuteRequest) -> ExecuteCommand:
    """Check every field; raise INVALID_ARGUMENT listing all violations."""
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    scope = _check_target(request.scope, request.target_id, "", out)
    _check_reason(request.reason, out)
    _check_request_id(request.request_id, out)
    which = request.WhichOneof("params")
    kind = catalog.get(which) if which else None
    params: Any = None
    if kind is None:
        out.append(FieldViolation("params", "set exactly one action type (params oneof)"))
    else:
        params = getattr(request, kind.name)
        out.extend(kind.validate(params))
        if scope and scope not in kind.scopes:
            out.append(
                FieldViolation("scope", f"{kind.name} allows scopes: {', '.join(kind.scopes)}")
            )
    if out or kind is None:
        raise invalid_argument(out)
    return ExecuteCommand(
        workspace_id=workspace_id,
        scope=scope,
        target_id=request.target_id,
        reason=request.reason,
        request_id=request.request_id,
        validate_only=request.validate_only,
        kind=kind,
        params=params,
        skip_denied=request.skip_denied,
    )


def validate_rollback(request: actions_pb2.RollbackRequest) -> RollbackCommand:
    """Check every field; raise INVALID_ARGUMENT listing all violations."""
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    action_id = parse_uuid(request.action_id, "action_id", out)
    _check_reason(request.reason, out)
    _check_request_id(request.request_id, out)
    if out:
        raise invalid_argument(out)
    return RollbackCommand(
        workspace_id=workspace_id,
        action_id=action_id,
        reason=request.reason,
        request_id=request.request_id,
        validate_only=request.validate_only,
        skip_superseded=request.skip_superseded,
        skip_denied=request.skip_denied,
    )


def validate_check_access(request: actions_pb2.CheckAccessRequest) -> AccessCommand:
    """Check the workspace and 1..500 distinct targets; raise INVALID_ARGUMENT listing
    violations.
    """
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    count = len(request.targets)
    if not 1 <= count <= MAX_ACCESS_TARGETS:
        out.append(FieldViolation("targets", f"must hold 1..{MAX_ACCESS_TARGETS}, got {count}"))
    targets = tuple(
        (_check_target(t.scope, t.target_id, f"targets[{i}].", out), t.target_id)
        for i, t in enumerate(request.targets[:MAX_ACCESS_TARGETS])
    )
    # Each target once: 500 copies of one target cost 500 answers for one question.
    first: dict[tuple[str, str], int] = {}
    for i, target in enumerate(targets):
        j = first.setdefault(target, i)
        if j != i:
            out.append(FieldViolation(f"targets[{i}]", f"repeats targets[{j}]"))
    if out:
        raise invalid_argument(out)
    return AccessCommand(workspace_id, targets)
