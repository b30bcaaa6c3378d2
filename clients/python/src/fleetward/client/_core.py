"""The IO-free core both clients share: requests, retry decisions, credentials.

The async clients (``_async``) are written against this module; the sync clients
(``_sync``) are generated from them, so every request is built and every failure is
classified in exactly one place.
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import grpc
from google.protobuf import timestamp_pb2

from fleetward.actions.v1 import actions_pb2
from fleetward.client.config import ClientConfig
from fleetward.client.errors import DeadlineExceeded, FleetwardError
from fleetward.client.params import ActionParams, Scope, ScopeLike

Metadata = tuple[tuple[str, str], ...]

MAX_MESSAGE_BYTES = 1024 * 1024
PAGE_SIZE = 100


class Retry(enum.Enum):
    """Which failures an RPC may retry."""

    READ = "read"
    """UNAVAILABLE: safe for reads."""
    MUTATION = "mutation"
    """UNAVAILABLE and ABORTED ``REQUEST_IN_PROGRESS``: safe because the request id stays."""


def is_retryable(error: FleetwardError, retry: Retry) -> bool:
    """Whether ``error`` may be retried by an RPC of kind ``retry``."""
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return True
    return (
        retry is Retry.MUTATION
        and error.code == grpc.StatusCode.ABORTED
        and error.reason == "REQUEST_IN_PROGRESS"
    )


def is_reconnectable(error: FleetwardError) -> bool:
    """Whether a watch stream that failed with ``error`` should reconnect and resume."""
    # A server going away shows up as UNAVAILABLE, or as CANCELLED once its grace ends
    # (client-side cancellation surfaces as asyncio.CancelledError, never as a status).
    return error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


@dataclass
class Attempts:
    """The state of one logical call: its overall deadline and how many attempts it made."""

    config: ClientConfig
    deadline: float | None
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    _expires: float | None = None
    # The error a retry is waiting to answer: raised if the wait itself overran the deadline.
    _last_error: FleetwardError | None = None

    def __post_init__(self) -> None:
        seconds = self.deadline if self.deadline is not None else self.config.default_deadline
        self._expires = None if seconds is None else time.monotonic() + seconds

    def start(self) -> float | None:
        """Begin an attempt; return its timeout (the remaining deadline).

        Raises:
            FleetwardError: The previous attempt's error, when the backoff before this retry
                ended after the deadline (the sleep overran what ``delay_before_retry``
                allowed): a retry that cannot run is not attempted, as ``RetryPolicy`` says.
            DeadlineExceeded: When the deadline passed before the first attempt.
        """
        self.attempt += 1
        if self._expires is None:
            return None
        remaining = self._expires - time.monotonic()
        if remaining <= 0:
            if self._last_error is not None:
                raise self._last_error
            raise DeadlineExceeded("deadline exceeded before the call could be (re)tried")
        return remaining

    def delay_before_retry(self, error: FleetwardError, retry: Retry) -> float | None:
        """Seconds to wait before retrying after ``error``, or ``None`` to give up."""
        if not is_retryable(error, retry) or self.attempt >= self.config.retry.max_attempts:
            return None
        delay = self.config.retry.backoff(self.attempt, self.rng)
        if self._expires is not None and time.monotonic() + delay >= self._expires:
            return None
        self._last_error = error
        return delay


def call_metadata(config: ClientConfig) -> Metadata:
    """The per-attempt metadata: the bearer token, fetched anew each time."""
    token = config.bearer_token()
    return (("authorization", f"Bearer {token}"),) if token else ()


def channel_credentials(config: ClientConfig) -> grpc.ChannelCredentials | None:
    """TLS credentials for the channel, or ``None`` for plaintext."""
    if config.tls is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=config.tls.root_certificates,
        private_key=config.tls.private_key,
        certificate_chain=config.tls.certificate_chain,
    )


def channel_options(config: ClientConfig) -> list[tuple[str, str | int]]:
    """Channel arguments: Fleetward's message limit, TLS name override, user options."""
    options: list[tuple[str, str | int]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    if config.tls is not None and config.tls.server_name:
        options.append(("grpc.ssl_target_name_override", config.tls.server_name))
    options.extend(config.options)
    return options


def new_request_id() -> str:
    """A fresh idempotency key (one per logical execute/rollback, reused on retries)."""
    return str(uuid.uuid4())


def execute_request(
    *,
    workspace_id: str,
    scope: ScopeLike,
    target_id: str,
    reason: str,
    params: ActionParams,
    request_id: str | None,
    validate_only: bool,
    skip_denied: bool = False,
) -> actions_pb2.ExecuteRequest:
    """Build an ``ExecuteRequest``; ``params`` picks the action type."""
    request = actions_pb2.ExecuteRequest(
        workspace_id=workspace_id,
        scope=Scope.of(scope).proto,
        target_id=target_id,
        reason=reason,
        request_id=request_id or new_request_id(),
        validate_only=validate_only,
        skip_denied=skip_denied,
    )
    params.apply(request)
    return request


def rollback_request(
    *,
    workspace_id: str,
    action_id: str,
    reason: str,
    request_id: str | None,
    validate_only: bool,
    skip_superseded: bool,
    skip_denied: bool = False,
) -> actions_pb2.RollbackRequest:
    """Build a ``RollbackRequest`` with a fresh request id unless one is given."""
    return actions_pb2.RollbackRequest(
        workspace_id=workspace_id,
        action_id=action_id,
        reason=reason,
        request_id=request_id or new_request_id(),
        validate_only=validate_only,
        skip_superseded=skip_superseded,
        skip_denied=skip_denied,
    )


def check_access_request(
    *, workspace_id: str, targets: Sequence[tuple[ScopeLike, str]]
) -> actions_pb2.CheckAccessRequest:
    """Build a ``CheckAccessRequest`` from ``(scope, target_id)`` pairs."""
    return actions_pb2.CheckAccessRequest(
        workspace_id=workspace_id,
        targets=[
            actions_pb2.AccessTarget(scope=Scope.of(scope).proto, target_id=target_id)
            for scope, target_id in targets
        ],
    )


def action_status(
    value: actions_pb2.ActionStatus.ValueType | str | None,
) -> actions_pb2.ActionStatus.ValueType:
    """An ``ActionStatus`` from the enum or a name such as ``"completed"``."""
    if value is None:
        return actions_pb2.ACTION_STATUS_UNSPECIFIED
    if isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("ACTION_STATUS_") else "ACTION_STATUS_" + name
        return actions_pb2.ActionStatus.Value(name)
    return value


def agent_status(
    value: actions_pb2.AgentStatus.ValueType | str | None,
) -> actions_pb2.AgentStatus.ValueType:
    """An ``AgentStatus`` from the enum or a name such as ``"paused"``."""
    if value is None:
        return actions_pb2.AGENT_STATUS_UNSPECIFIED
    if isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("AGENT_STATUS_") else "AGENT_STATUS_" + name
        return actions_pb2.AgentStatus.Value(name)
    return value


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp from an aware (or UTC-naive) datetime."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def list_actions_request(
    *,
    workspace_id: str,
    action_type: str,
    status: actions_pb2.ActionStatus.ValueType | str | None,
    actor_subject: str,
    target_id: str,
    created_after: datetime | None,
    created_before: datetime | None,
    page_size: int,
    page_token: str = "",
) -> actions_pb2.ListActionsRequest:
    """Build a ``ListActionsRequest`` (the first page unless ``page_token`` is given)."""
    return actions_pb2.ListActionsRequest(
        workspace_id=workspace_id,
        action_type=action_type,
        status=action_status(status),
        actor_subject=actor_subject,
        target_id=target_id,
        created_after=timestamp(created_after),
        created_before=timestamp(created_before),
        page_size=page_size,
        page_token=page_token,
    )
