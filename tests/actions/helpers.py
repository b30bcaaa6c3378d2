"""A thin test client over the generated ActionServiceStub, and error-detail decoding."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from services.actions.model import NewAction
from tests.conftest import Secrets

SCOPES = {
    "fleet": actions_pb2.SCOPE_FLEET,
    "department": actions_pb2.SCOPE_DEPARTMENT,
    "agent": actions_pb2.SCOPE_AGENT,
}
STATUS = actions_pb2.ActionStatus


@dataclass
class Details:
    """The decoded google.rpc.Status of a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: dict[str, str] = field(default_factory=dict)
    preconditions: list[tuple[str, str]] = field(default_factory=list)  # (type, subject)
    error_infos: int = 0


def details(exc: grpc.aio.AioRpcError) -> Details:
    """Decode the rich status of ``exc`` (ErrorInfo, BadRequest, PreconditionFailure)."""
    out = Details(exc.code(), exc.details() or "")
    for key, value in exc.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for any_msg in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            pre = error_details_pb2.PreconditionFailure()
            if any_msg.Unpack(info):
                out.error_infos += 1
                out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
            elif any_msg.Unpack(bad):
                out.field_violations.update({v.field: v.description for v in bad.field_violations})
            elif any_msg.Unpack(pre):
                out.preconditions.extend((v.type, v.subject) for v in pre.violations)
    return out


class Api:
    """Calls the real action service as a given subject."""

    def __init__(self, channel: grpc.aio.Channel, secrets: Secrets) -> None:
        self.stub = actions_pb2_grpc.ActionServiceStub(channel)
        self.secrets = secrets

    def auth(self, subject: str) -> tuple[tuple[str, str], ...]:
        """Metadata with a valid token for ``subject``."""
        return self.bearer(self.secrets, subject)

    @staticmethod
    def bearer(secrets: Secrets, subject: str) -> tuple[tuple[str, str], ...]:
        """Metadata with a valid token for ``subject`` signed with ``secrets``."""
        return (("authorization", f"Bearer {secrets.user_token(subject)}"),)

    async def execute(
        self,
        subject: str,
        workspace: uuid.UUID | str,
        action: str,
        *,
        scope: str = "agent",
        target: str = "",
        reason: str = "test intervention",
        request_id: str | None = None,
        validate_only: bool = False,
        deadline: float = 10,
        **params: Any,
    ) -> actions_pb2.Action:
        """Execute ``action`` with ``params`` (the params message fields)."""
        request = execute_request(
            workspace,
            action,
            scope=scope,
            target=target,
            reason=reason,
            request_id=request_id,
            validate_only=validate_only,
            **params,
        )
        result: actions_pb2.Action = await self.stub.Execute(
            request, metadata=self.auth(subject), timeout=deadline
        )
        return result

    async def rollback(
        self,
        subject: str,
        workspace: uuid.UUID | str,
        action_id: str,
        *,
        reason: str = "undo test",
        request_id: str | None = None,
        validate_only: bool = False,
        skip_superseded: bool = False,
        deadline: float = 10,
    ) -> actions_pb2.Action:
        """Roll back ``action_id``."""
        result: actions_pb2.Action = await self.stub.Rollback(
            actions_pb2.RollbackRequest(
                workspace_id=str(workspace),
                action_id=action_id,
                reason=reason,
                request_id=request_id or uuid.uuid4().hex,
                validate_only=validate_only,
                skip_superseded=skip_superseded,
            ),
            metadata=self.auth(subject),
            timeout=deadline,
        )
        return result


def execute_request(
    workspace: uuid.UUID | str,
    action: str,
    *,
    scope: str = "agent",
    target: str = "",
    reason: str = "test intervention",
    request_id: str | None = None,
    validate_only: bool = False,
    **params: Any,
) -> actions_pb2.ExecuteRequest:
    """An ExecuteRequest whose ``params`` oneof is ``action``."""
    request = actions_pb2.ExecuteRequest(
        workspace_id=str(workspace),
        scope=SCOPES[scope],
        target_id=target,
        reason=reason,
        request_id=request_id or uuid.uuid4().hex,
        validate_only=validate_only,
    )
    if action:
        getattr(request, action).SetInParent()
        for name, value in params.items():
            setattr(getattr(request, action), name, value)
    return request


async def counts(pool: asyncpg.Pool, workspace: uuid.UUID) -> Mapping[str, int]:
    """Rows a workspace has in every table an action can write."""
    row = await pool.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM action_audit_log WHERE workspace_id = $1) AS actions,
          (SELECT count(*) FROM action_events WHERE workspace_id = $1) AS events,
          (SELECT count(*) FROM action_targets t JOIN action_audit_log a USING (action_id)
            WHERE a.workspace_id = $1) AS targets,
          (SELECT count(*) FROM budgets WHERE workspace_id = $1) AS budgets,
          (SELECT count(*) FROM agents WHERE workspace_id = $1 AND last_action_id IS NOT NULL)
            AS touched_agents,
          (SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1) AS seq
        """,
        workspace,
    )
    assert row is not None
    return dict(row)


async def agent_states(pool: asyncpg.Pool, workspace: uuid.UUID) -> dict[str, str]:
    """agent_id → status."""
    rows = await pool.fetch(
        "SELECT agent_id, status FROM agents WHERE workspace_id = $1", workspace
    )
    return {r["agent_id"]: r["status"] for r in rows}


def result(action: actions_pb2.Action) -> dict[str, Any]:
    """An Action's ``result`` as plain JSON (counts as floats, like any Struct number)."""
    return json_format.MessageToDict(action.result)


def new_action(workspace_id: uuid.UUID, **overrides: Any) -> NewAction:
    """An action to record directly (below the RPCs): bob's agent-scope pause of eng-code-1
    with a fresh id and request id, ``overrides`` replacing any field.
    """
    action_id = uuid.uuid4()
    fields: dict[str, Any] = {
        "action_id": action_id,
        "workspace_id": workspace_id,
        "action_type": "pause_agent",
        "scope": "agent",
        "target_id": "eng-code-1",
        "params": {},
        "reason": "investigating cost spike",
        "subject": "bob",
        "roles": ("operator",),
        "can_rollback": True,
        "request_id": f"r-{action_id.hex}",
        "fingerprint": "f" * 64,
        "policy_version": "v1",
        "decision_id": "d-1",
    }
    fields.update(overrides)
    return NewAction(**fields)
