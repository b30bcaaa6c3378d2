"""Domain errors of the action service, named by our own reasons (each reason's gRPC
status code is the one table in :mod:`services.actions.reasons`; docs/architecture.md §4).

Every constructor returns a :class:`ServiceError`; the RPC boundary aborts with its
status. Failed and denied actions store their error as JSON (``error_details``) named by
our reason (with message, metadata, violations), so that an idempotent repeat gets the
original error back (:func:`to_json` / :func:`from_json`); the code is derived from the
reason, never read from the row for a reason this version knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

from services.actions.reasons import CODES, error
from services.common.status import PreconditionViolation, ServiceError

__all__ = [
    "CODES",
    "ServiceError",
    "already_in_state",
    "database_unavailable",
    "deadline_exceeded",
    "error",
    "execution_failed",
    "from_json",
    "idempotency_key_reused",
    "internal",
    "not_found",
    "permission_denied",
    "policy_unavailable",
    "rate_limited",
    "request_in_progress",
    "rollback_refused",
    "superseded",
    "targets_changed",
    "to_json",
    "too_many_streams",
]


# A denial names at most this many denied agents (denied_count has them all).
DENIED_IDS_LISTED = 10


def permission_denied(
    required_permission: str,
    roles: Sequence[str],
    policy_version: str,
    message: str = "",
    *,
    denied_agents: Sequence[str] = (),
    checked_agents: int = 0,
) -> ServiceError:
    """PERMISSION_DENIED ``INSUFFICIENT_PERMISSIONS`` with the seed's detail.

    Args:
        required_permission: The permission the caller lacks (``actions:pause_agent``).
        roles: The caller's roles in the workspace, as the policy service answered.
        policy_version: The policy version that decided.
        message: Replaces the default message.
        denied_agents: When the target itself is allowed but agents the action would
            change are not: their ids (metadata ``denied_count`` and the first
            :data:`DENIED_IDS_LISTED` in ``denied_agent_ids``).
        checked_agents: How many agents the action would change (for the message).
    """
    role = ",".join(roles)
    who = f" for role(s) {role}" if role else " (no role in this workspace)"
    metadata = {
        "required_permission": required_permission,
        "user_role": role,
        "policy_version": policy_version,
    }
    text = message or f"permission {required_permission} denied{who}"
    if denied_agents and not message:
        listed = ", ".join(denied_agents[:DENIED_IDS_LISTED])
        more = len(denied_agents) - DENIED_IDS_LISTED
        text = (
            f"permission {required_permission} denied on {len(denied_agents)} of "
            f"{checked_agents} agents the action would change ({listed}"
            + (f" and {more} more" if more > 0 else "")
            + f"){who}; nothing was changed"
            + ("; skip_denied acts on the others" if checked_agents > len(denied_agents) else "")
        )
    if denied_agents:
        metadata["denied_count"] = str(len(denied_agents))
        metadata["denied_agent_ids"] = ",".join(denied_agents[:DENIED_IDS_LISTED])
    return error("INSUFFICIENT_PERMISSIONS", text, metadata=metadata)


def not_found(kind: str, ident: str) -> ServiceError:
    """NOT_FOUND for an unknown agent, department, workspace or action."""
    return error(
        "NOT_FOUND",
        f"{kind} {ident!r} not found",
        metadata={"kind": kind, "id": ident},
    )


def idempotency_key_reused(request_id: str, action_id: str) -> ServiceError:
    """ALREADY_EXISTS: the request_id was used for a different request."""
    return error(
        "IDEMPOTENCY_KEY_REUSED",
        f"request_id {request_id!r} was already used for a different request",
        metadata={"request_id": request_id, "action_id": action_id},
    )


def request_in_progress(request_id: str, action_id: str | None) -> ServiceError:
    """ABORTED: the first request with this request_id is still executing (its action id,
    when it is recorded already).
    """
    metadata = {"request_id": request_id}
    if action_id is not None:
        metadata["action_id"] = action_id
    return error(
        "REQUEST_IN_PROGRESS",
        f"request {request_id!r} is still executing; retry later",
        metadata=metadata,
    )


def already_in_state(agent_id: str, status: str, detail: str = "") -> ServiceError:
    """FAILED_PRECONDITION: the target already is as asked (resume an active agent).

    Args:
        agent_id: The target (an agent or department id).
        status: The state it already is in.
        detail: Replaces "is already <status>" in the message.
    """
    return error(
        "ALREADY_IN_STATE",
        f"agent {agent_id!r} {detail or f'is already {status}'}",
        metadata={"agent_id": agent_id, "status": status},
    )


def rollback_refused(reason: str, action_id: str, message: str) -> ServiceError:
    """FAILED_PRECONDITION ``NOT_ROLLBACKABLE`` / ``ALREADY_ROLLED_BACK`` / ``NOT_COMPLETED``."""
    return error(
        reason,
        message,
        metadata={"action_id": action_id},
        precondition_violations=[PreconditionViolation(reason, action_id, message)],
    )


def superseded(action_id: str, later: Mapping[str, str]) -> ServiceError:
    """FAILED_PRECONDITION ``SUPERSEDED``; ``later`` maps each target key to the later action."""
    later_ids = sorted(set(later.values()))
    return error(
        "SUPERSEDED",
        f"action {action_id} was superseded by {', '.join(later_ids)} on "
        f"{', '.join(sorted(later))}; use skip_superseded to roll back the rest",
        metadata={"action_id": action_id, "superseded_by": ",".join(later_ids)},
        precondition_violations=[
            PreconditionViolation("SUPERSEDED", later_id, f"{key} was changed later by {later_id}")
            for key, later_id in sorted(later.items())
        ],
    )


def targets_changed(action_id: str, targets: Sequence[str]) -> ServiceError:
    """ABORTED ``TARGETS_CHANGED``: what the action names moved between its permission check
    and its row locks (an agent changed department); nothing was changed, a new request
    is checked against where things are now.
    """
    listed = ", ".join(targets[:DENIED_IDS_LISTED])
    return error(
        "TARGETS_CHANGED",
        f"action {action_id} failed: {listed} moved while the action was being authorized; "
        "nothing was changed; retry with a new request_id",
        metadata={"action_id": action_id, "targets": listed},
    )


def rate_limited(limit: int, window_s: int, retry_after_s: float) -> ServiceError:
    """RESOURCE_EXHAUSTED ``RATE_LIMITED`` (with RetryInfo): too many recorded denials."""
    return error(
        "RATE_LIMITED",
        f"more than {limit} denied requests in {window_s} s; not recorded, nothing was "
        f"executed; try again in {retry_after_s:.0f} s",
        metadata={"limit": str(limit), "window_s": str(window_s)},
        retry_delay_s=retry_after_s,
    )


def too_many_streams(scope: str, limit: int) -> ServiceError:
    """RESOURCE_EXHAUSTED ``TOO_MANY_STREAMS``: the ``scope`` (subject, process) is at its cap."""
    return error(
        "TOO_MANY_STREAMS",
        f"too many open WatchActions streams for this {scope} (at most {limit}); "
        "close one, or watch through a shared consumer",
        metadata={"scope": scope, "limit": str(limit)},
    )


def policy_unavailable(detail: str) -> ServiceError:
    """UNAVAILABLE ``POLICY_UNAVAILABLE``: nothing was executed."""
    return error(
        "POLICY_UNAVAILABLE",
        f"policy service unavailable ({detail}); nothing was executed",
    )


def database_unavailable(detail: str) -> ServiceError:
    """UNAVAILABLE ``DATABASE_UNAVAILABLE``."""
    return error("DATABASE_UNAVAILABLE", f"database unavailable ({detail})")


def deadline_exceeded() -> ServiceError:
    """DEADLINE_EXCEEDED before anything was started."""
    return error(
        "DEADLINE_EXCEEDED",
        "the request deadline passed before it could start; nothing was executed",
    )


def execution_failed(action_id: str, message: str, correlation_id: str = "") -> ServiceError:
    """INTERNAL ``ACTION_EXECUTION_FAILED``: the audit row says ``failed``.

    Args:
        action_id: The failed action.
        message: What the audit row and the caller are told.
        correlation_id: Names the log line with the details of an unexpected failure.
    """
    metadata = {"action_id": action_id}
    if correlation_id:
        metadata["correlation_id"] = correlation_id
    return error(
        "ACTION_EXECUTION_FAILED",
        f"action {action_id} failed: {message}",
        metadata=metadata,
    )


def internal(message: str = "internal error") -> ServiceError:
    """INTERNAL for an unexpected exception (logged with its traceback by the servicer)."""
    return error("INTERNAL", message)


def to_json(err: ServiceError) -> dict[str, Any]:
    """The error as stored in ``action_audit_log.error_details``, named by our reason.

    ``code`` is written only for replicas of the previous release (which read it), during a
    rolling deploy or after a rollback of the deploy; this version reads the reason.
    """
    return {
        "reason": err.reason,
        "code": err.code.name,
        "message": err.message,
        "metadata": dict(err.metadata),
        "precondition_violations": [
            {"type": v.type, "subject": v.subject, "description": v.description}
            for v in err.precondition_violations
        ],
    }


def from_json(data: Mapping[str, Any]) -> ServiceError:
    """Rebuild a stored error (the original outcome of a failed or denied request).

    The code comes from :data:`CODES`; the stored ``code`` is read only for a reason this
    version does not know (written by a newer one), and never as OK.
    """
    violations: Iterable[Mapping[str, str]] = data.get("precondition_violations") or ()
    reason = str(data["reason"])
    code = CODES.get(reason)
    if code is None:
        code = grpc.StatusCode.__members__.get(str(data.get("code")), grpc.StatusCode.INTERNAL)
        if code is grpc.StatusCode.OK:
            code = grpc.StatusCode.INTERNAL
    return ServiceError(
        code,
        reason,
        str(data["message"]),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        precondition_violations=[
            PreconditionViolation(v["type"], v["subject"], v["description"]) for v in violations
        ],
    )
