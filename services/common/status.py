"""The error model of ARCHITECTURE §4: one exception type that becomes one rich gRPC status.

Every non-OK status carries a ``google.rpc.Status`` with exactly one ``ErrorInfo``
(domain ``fleetward``) plus ``BadRequest`` or ``PreconditionFailure`` where they apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "fleetward"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field (``BadRequest.FieldViolation``)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition (``PreconditionFailure.Violation``)."""

    type: str
    subject: str
    description: str


@dataclass
class FleetwardError(Exception):
    """A domain error that maps to exactly one gRPC status with details."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: Sequence[FieldViolation] = ()
    precondition_violations: Sequence[PreconditionViolation] = ()

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"

    def to_status(self) -> grpc.Status:
        """Build the ``grpc.Status`` (with packed details) for ``context.abort_with_status``."""
        return rpc_status.to_status(self.to_proto())

    def to_proto(self) -> status_pb2.Status:
        """Build the ``google.rpc.Status`` message."""
        details: list[any_pb2.Any] = []
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=DOMAIN, metadata=dict(self.metadata)
        )
        details.append(_pack(info))
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.field_violations
                ]
            )
            details.append(_pack(bad))
        if self.precondition_violations:
            pre = error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=v.type, subject=v.subject, description=v.description
                    )
                    for v in self.precondition_violations
                ]
            )
            details.append(_pack(pre))
        return status_pb2.Status(
            code=_CODE_VALUES[self.code], message=self.message, details=details
        )


def _pack(
    message: error_details_pb2.ErrorInfo
    | error_details_pb2.BadRequest
    | error_details_pb2.PreconditionFailure,
) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_CODE_VALUES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.CANCELLED: code_pb2.CANCELLED,
    grpc.StatusCode.UNKNOWN: code_pb2.UNKNOWN,
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: code_pb2.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: code_pb2.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE: code_pb2.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: code_pb2.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: code_pb2.DATA_LOSS,
    grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
}


def invalid_argument(violations: Sequence[FieldViolation]) -> FleetwardError:
    """INVALID_ARGUMENT with ``BadRequest`` field violations."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return FleetwardError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        f"invalid request: {summary}",
        field_violations=violations,
    )


def unauthenticated(message: str) -> FleetwardError:
    """UNAUTHENTICATED with reason ``UNAUTHENTICATED``."""
    return FleetwardError(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", message)


def unimplemented(method: str) -> FleetwardError:
    """UNIMPLEMENTED for an RPC that is declared but not built yet."""
    return FleetwardError(
        grpc.StatusCode.UNIMPLEMENTED, "UNIMPLEMENTED", f"{method} is not implemented yet"
    )
