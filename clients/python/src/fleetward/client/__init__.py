"""The Fleetward client: sync and async clients of the action and policy services.

    async with AsyncActionsClient(ClientConfig(target="127.0.0.1:50051", token=token)) as c:
        action = await c.execute(workspace_id=ws, scope="agent", target_id="eng-code-1",
                                 reason="runaway spend", params=PauseAgent(duration_minutes=30))

Methods return the generated protobuf messages (``fleetward.actions.v1.actions_pb2``,
``fleetward.policy.v1.policy_pb2``) and raise :mod:`fleetward.client.errors` exceptions.
The sync clients are generated from the async ones (one source of truth).
"""

from __future__ import annotations

from fleetward.client._async.actions import AsyncActionsClient
from fleetward.client._async.policy import AsyncPolicyClient
from fleetward.client._sync.actions import ActionsClient
from fleetward.client._sync.policy import PolicyClient
from fleetward.client.config import ClientConfig, RetryPolicy, TlsConfig, TokenProvider
from fleetward.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    FleetwardError,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from fleetward.client.params import (
    ActionParams,
    PauseAgent,
    RestartAgent,
    ResumeAgent,
    Scope,
    ScopeLike,
    SetBudget,
)
from fleetward.client.results import ActionResult, AgentChange, SkippedTarget, action_result

__all__ = [
    "Aborted",
    "ActionParams",
    "ActionResult",
    "ActionsClient",
    "AgentChange",
    "AlreadyExists",
    "AsyncActionsClient",
    "AsyncPolicyClient",
    "Cancelled",
    "ClientConfig",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "FleetwardError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PauseAgent",
    "PermissionDenied",
    "PolicyClient",
    "PreconditionViolation",
    "ResourceExhausted",
    "RestartAgent",
    "ResumeAgent",
    "RetryPolicy",
    "Scope",
    "ScopeLike",
    "SetBudget",
    "SkippedTarget",
    "TlsConfig",
    "TokenProvider",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "action_result",
]
