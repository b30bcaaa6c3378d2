"""Policy decisions as the action service uses them: require, or tell NOT_FOUND from DENIED."""

from __future__ import annotations

import uuid

from services.actions import errors
from services.actions.call import Call
from services.actions.policy_gateway import PolicyDecision, PolicyGateway, Question
from services.common.names import FLEET_PATH

READ = "actions:read"
ROLLBACK = "actions:rollback"


def question(call: Call, workspace_id: uuid.UUID, permission: str, resource: str) -> Question:
    """A Check question for the caller."""
    return Question(call.subject, str(workspace_id), permission, resource)


def denial(permission: str, decision: PolicyDecision) -> errors.ServiceError:
    """PERMISSION_DENIED for a negative decision."""
    roles = decision.roles if decision.has_role else ()
    return errors.permission_denied(permission, roles, decision.policy_version)


async def require(
    policy: PolicyGateway, call: Call, workspace_id: uuid.UUID, permission: str, resource: str
) -> PolicyDecision:
    """The allowing decision, or PERMISSION_DENIED."""
    decision = await policy.check(
        question(call, workspace_id, permission, resource), call.remaining()
    )
    if not decision.allowed:
        raise denial(permission, decision)
    return decision


async def not_found_or_denied(
    policy: PolicyGateway,
    call: Call,
    workspace_id: uuid.UUID,
    required_permission: str,
    kind: str,
    ident: str,
) -> errors.ServiceError:
    """For an unknown id: NOT_FOUND to a reader of the workspace, else PERMISSION_DENIED."""
    decision = await policy.check(question(call, workspace_id, READ, FLEET_PATH), call.remaining())
    if decision.allowed:
        return errors.not_found(kind, ident)
    return denial(required_permission, decision)
