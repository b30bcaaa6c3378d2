"""The error model of docs/architecture.md §4: one exception type that becomes one rich gRPC status.

Every non-OK status carries a ``google.rpc.Status`` with exactly one ``ErrorInfo``
(domain ``fleetward``) plus ``BadRequest`` or ``PreconditionFailure`` where they apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "fleetward"
# A status travels in HTTP/2 trailers, which clients refuse above 8 KiB (soft) / 16 KiB
# (hard): an error that echoes huge or many bad fields would reach the caller as an
# unexplained RESOURCE_EXHAUSTED. Keep every status well below that.
MAX_MESSAGE = 512  # UTF-8 bytes, for the message and each metadata value
MAX_TEXT = 200  # UTF-8 bytes, for each violation's field, subject and description
MAX_VIOLATIONS = 8
# The serialized google.rpc.Status (base64 in the trailers, plus the message again).
STATUS_BUDGET = 4000


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
class ServiceError(Exception):
    """A domain error that maps to exactly one gRPC status with details."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: Sequence[FieldViolation] = ()
    precondition_violations: Sequence[PreconditionViolation] = ()
    retry_delay_s: float | None = None  # a RetryInfo detail: when to try again

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"

    def to_status(self) -> grpc.Status:
        """Build the ``grpc.Status`` (with packed details) for ``context.abort_with_status``."""
        return rpc_status.to_status(self.to_proto())

    def to_proto(self) -> status_pb2.Status:
        """Build the ``google.rpc.Status`` message (at most STATUS_BUDGET bytes of it)."""
        limit = MAX_VIOLATIONS
        status = self._proto(limit)
        while status.ByteSize() > STATUS_BUDGET and limit > 0:
            limit //= 2
            status = self._proto(limit)
        return status

    def _proto(self, max_violations: int) -> status_pb2.Status:
        details: list[any_pb2.Any] = []
        info = error_details_pb2.ErrorInfo(
            reason=self.reason,
            domain=DOMAIN,
            metadata={k: _bounded(v, MAX_MESSAGE) for k, v in self.metadata.items()},
        )
        details.append(_pack(info))
        if self.field_violations:
            shown = list(self.field_violations[:max_violations])
            if len(self.field_violations) > max_violations:
                more = len(self.field_violations) - max_violations
                shown.append(FieldViolation("…", f"and {more} more violations"))
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_bounded(v.field, MAX_TEXT),
                        description=_bounded(v.description, MAX_TEXT),
                    )
                    for v in shown
                ]
            )
            details.append(_pack(bad))
        if self.precondition_violations:
            pre = error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=v.type,
                        subject=_bounded(v.subject, MAX_TEXT),
                        description=_bounded(v.description, MAX_TEXT),
                    )
                    for v in self.precondition_violations[: max(max_violations, 1)]
                ]
            )
            details.append(_pack(pre))
        if self.retry_delay_s is not None:
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(max(0, round(self.retry_delay_s * 1000)))
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
        return status_pb2.Status(
            code=_CODE_VALUES[self.code],
            message=_bounded(self.message, MAX_MESSAGE),
            details=details,
        )


def _bounded(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (marked with an ellipsis)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def _pack(
    message: error_details_pb2.ErrorInfo
    | error_details_pb2.BadRequest
    | error_details_pb2.PreconditionFailure
    | error_details_pb2.RetryInfo,
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


def invalid_argument(violations: Sequence[FieldViolation]) -> ServiceError:
    """INVALID_ARGUMENT with ``BadRequest`` field violations."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return ServiceError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        f"invalid request: {summary}",
        field_violations=violations,
    )


def unauthenticated(message: str) -> ServiceError:
    """UNAUTHENTICATED with reason ``UNAUTHENTICATED``."""
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", message)


def unimplemented(method: str) -> ServiceError:
    """UNIMPLEMENTED for an RPC that is declared but not built yet."""
    return ServiceError(
        grpc.StatusCode.UNIMPLEMENTED, "UNIMPLEMENTED", f"{method} is not implemented yet"
    )
