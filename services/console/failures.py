"""The action service's errors as the console shows them: an HTTP status and a JSON body."""

from __future__ import annotations

from typing import Any

import grpc
from fleetward.client import FleetwardError

# The HTTP status a page or the dialog's fetch gets for each gRPC code.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def http_status(error: FleetwardError) -> int:
    """The HTTP status for ``error`` (502 for anything the table does not name)."""
    return HTTP_STATUS.get(error.code, 502)


def error_body(error: FleetwardError) -> dict[str, Any]:
    """The error as the dialog and the toasts show it: code, reason, message, details."""
    return {"error": error.to_json()}


def console_error(status: int, code: str, message: str) -> dict[str, Any]:
    """An error the console itself raises (bad JSON, a foreign Origin, no session)."""
    return {
        "error": {
            "code": code,
            "reason": "",
            "message": message,
            "metadata": {},
            "field_violations": [],
            "precondition_violations": [],
            "http_status": status,
        }
    }
