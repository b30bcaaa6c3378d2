"""Our error reasons, and the one table that gives each its gRPC status code.

The domain names what went wrong by a reason (``SUPERSEDED``, ``ALREADY_IN_STATE``, …);
only this table says which gRPC code a reason leaves the service with
(docs/architecture.md §4). Stored errors are named by their reason, too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from services.common.status import ServiceError

# Each reason's gRPC status code: the only place the domain meets gRPC's vocabulary.
CODES: Mapping[str, grpc.StatusCode] = {
    "INSUFFICIENT_PERMISSIONS": grpc.StatusCode.PERMISSION_DENIED,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "IDEMPOTENCY_KEY_REUSED": grpc.StatusCode.ALREADY_EXISTS,
    "REQUEST_IN_PROGRESS": grpc.StatusCode.ABORTED,
    "TARGETS_CHANGED": grpc.StatusCode.ABORTED,
    "ALREADY_IN_STATE": grpc.StatusCode.FAILED_PRECONDITION,
    "NOT_ROLLBACKABLE": grpc.StatusCode.FAILED_PRECONDITION,
    "ALREADY_ROLLED_BACK": grpc.StatusCode.FAILED_PRECONDITION,
    "NOT_COMPLETED": grpc.StatusCode.FAILED_PRECONDITION,
    "SUPERSEDED": grpc.StatusCode.FAILED_PRECONDITION,
    "RATE_LIMITED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "TOO_MANY_STREAMS": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "POLICY_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DATABASE_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "ACTION_EXECUTION_FAILED": grpc.StatusCode.INTERNAL,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    # Built by the shared RPC boundary (services/common/status.py); listed so that one an
    # effect raised, and so stored, reads back with its code.
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
}


def error(reason: str, message: str, **details: Any) -> ServiceError:
    """The :class:`ServiceError` of ``reason`` (its code from :data:`CODES`)."""
    return ServiceError(CODES[reason], reason, message, **details)
