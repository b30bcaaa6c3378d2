"""Exceptions a Fleetward client raises, decoded from the server's ``google.rpc.Status``.

Every failed RPC becomes exactly one :class:`FleetwardError` subclass chosen by its gRPC
status code; the ``ErrorInfo`` reason and metadata, ``BadRequest`` field violations and
``PreconditionFailure`` violations are decoded from the ``grpc-status-details-bin``
trailer. No ``grpc.RpcError`` reaches a caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "FleetwardError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PreconditionViolation",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_from_rpc",
    "error_from_status",
]

DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition (``google.rpc.PreconditionFailure.Violation``)."""

    type: str
    subject: str
    description: str


class FleetwardError(Exception):
    """Base of every error a Fleetward client raises.

    Attributes:
        code: The gRPC status code.
        message: The status message.
        reason: ``ErrorInfo.reason`` (e.g. ``INSUFFICIENT_PERMISSIONS``); empty when the
            status had no ErrorInfo (gRPC's own errors such as a deadline).
        domain: ``ErrorInfo.domain`` (``fleetward`` for the services' own errors).
        metadata: ``ErrorInfo.metadata`` (e.g. ``required_permission``, ``action_id``).
        field_violations: ``BadRequest`` violations (INVALID_ARGUMENT).
        precondition_violations: ``PreconditionFailure`` violations (e.g. SUPERSEDED
            names the later action as ``subject``).
        retry_delay: Seconds to wait before trying again (``RetryInfo``; e.g. with
            RESOURCE_EXHAUSTED ``RATE_LIMITED``), or None.
    """

    default_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        precondition_violations: Iterable[PreconditionViolation] = (),
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.precondition_violations: tuple[PreconditionViolation, ...] = tuple(
            precondition_violations
        )
        self.retry_delay = retry_delay

    @property
    def action_id(self) -> str | None:
        """The action the error is about (``ErrorInfo.metadata["action_id"]``), if any."""
        return self.metadata.get("action_id")

    def __str__(self) -> str:
        label = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        return f"{label}: {self.message}"

    def to_json(self) -> dict[str, object]:
        """The error as a JSON-ready object: code name, reason, message, metadata and
        violations (what ``fleetward --json`` prints and the console's dialog shows).
        """
        return {
            "code": self.code.name,
            "reason": self.reason,
            "message": self.message,
            "metadata": dict(self.metadata),
            "field_violations": [
                {"field": v.field, "description": v.description} for v in self.field_violations
            ],
            "precondition_violations": [
                {"type": v.type, "subject": v.subject, "description": v.description}
                for v in self.precondition_violations
            ],
        }

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(code={self.code.name}, reason={self.reason!r}, message={self.message!r})"


class Unauthenticated(FleetwardError):
    """No, an invalid or an expired token (UNAUTHENTICATED)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(FleetwardError):
    """The policy denied the call (PERMISSION_DENIED, ``INSUFFICIENT_PERMISSIONS``)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class InvalidArgument(FleetwardError):
    """A malformed request (INVALID_ARGUMENT); see ``field_violations``."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FleetwardError):
    """An unknown agent, department or action (NOT_FOUND)."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FleetwardError):
    """The request id was used for a different request (``IDEMPOTENCY_KEY_REUSED``)."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(FleetwardError):
    """The state forbids the call (``ALREADY_IN_STATE``, ``SUPERSEDED``, ...).

    ``reason`` says which precondition; ``precondition_violations`` give the details.
    """

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(FleetwardError):
    """A concurrent attempt holds the request (``REQUEST_IN_PROGRESS``)."""

    default_code = grpc.StatusCode.ABORTED


class ResourceExhausted(FleetwardError):
    """A message over the size limit, or a server out of resources (RESOURCE_EXHAUSTED)."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(FleetwardError):
    """The call's overall deadline passed (DEADLINE_EXCEEDED)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unavailable(FleetwardError):
    """The service, its policy service or its database is unreachable (UNAVAILABLE)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class Internal(FleetwardError):
    """The action failed (``ACTION_EXECUTION_FAILED``) or the server broke (INTERNAL, UNKNOWN)."""

    default_code = grpc.StatusCode.INTERNAL


class Unimplemented(FleetwardError):
    """The server does not implement the RPC (UNIMPLEMENTED)."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class Cancelled(FleetwardError):
    """The call was cancelled (CANCELLED)."""

    default_code = grpc.StatusCode.CANCELLED


_CLASSES: dict[grpc.StatusCode, type[FleetwardError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def error_from_status(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None = None
) -> FleetwardError:
    """Build the exception for a status code, decoding a ``google.rpc.Status`` if given."""
    cls = _CLASSES.get(code, FleetwardError)
    if status is None:
        return cls(message, code=code)
    reason, domain = "", ""
    metadata: dict[str, str] = {}
    fields: list[FieldViolation] = []
    preconditions: list[PreconditionViolation] = []
    retry_delay: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain = str(info.reason), str(info.domain)
            metadata = {str(k): str(v) for k, v in info.metadata.items()}
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(
                FieldViolation(str(v.field), str(v.description)) for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            preconditions.extend(
                PreconditionViolation(str(v.type), str(v.subject), str(v.description))
                for v in failure.violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToMilliseconds() / 1000
    return cls(
        str(status.message) or message,
        code=code,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=fields,
        precondition_violations=preconditions,
        retry_delay=retry_delay,
    )


def error_from_rpc(error: grpc.RpcError) -> FleetwardError:
    """Turn a failed call (sync or ``grpc.aio``) into its :class:`FleetwardError`.

    Reads the code, the message and the ``grpc-status-details-bin`` trailer of the call
    (what ``grpc_status.rpc_status.from_call`` reads), tolerating a missing or
    undecodable trailer.
    """
    code_of = getattr(error, "code", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_of = getattr(error, "details", None)
    message = str((details_of() if callable(details_of) else None) or "") or code.name
    trailers_of = getattr(error, "trailing_metadata", None)
    trailers = (trailers_of() if callable(trailers_of) else None) or ()
    status: status_pb2.Status | None = None
    for key, value in trailers:
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # a corrupt trailer must not hide the status code
                status = None
            break
    return error_from_status(code, message, status)
