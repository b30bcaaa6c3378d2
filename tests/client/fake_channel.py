"""A sync client over grpcio-testing's channel: the test thread plays the server."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc_testing
from fleetward.actions.v1 import actions_pb2
from fleetward.client import ActionsClient, ClientConfig, RetryPolicy

from services.common.status import FieldViolation, PreconditionViolation, ServiceError

T = TypeVar("T")
SERVICE = actions_pb2.DESCRIPTOR.services_by_name["ActionService"]
FAST_RETRIES = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.002)
WORKSPACE = "ac3e0000-0000-4000-8000-000000000001"
ACTION_ID = "0b0c0d0e-0000-4000-8000-000000000042"


def status(
    code: grpc.StatusCode,
    reason: str,
    *,
    metadata: Mapping[str, str] | None = None,
    fields: Sequence[tuple[str, str]] = (),
    preconditions: Sequence[tuple[str, str, str]] = (),
) -> grpc.Status:
    """A status built exactly as the services build theirs (services.common.status)."""
    return ServiceError(
        code,
        reason,
        f"{reason.lower()} happened",
        metadata=dict(metadata or {}),
        field_violations=[FieldViolation(f, d) for f, d in fields],
        precondition_violations=[PreconditionViolation(*p) for p in preconditions],
    ).to_status()


@dataclass
class Taken:
    """One RPC the client made: its metadata and request, and the handle to answer it."""

    metadata: dict[str, str]
    request: Any
    rpc: Any

    def fail(self, failure: grpc.Status) -> None:
        """Terminate with a non-OK status (unary RPC)."""
        self.rpc.terminate(None, failure.trailing_metadata, failure.code, failure.details)

    def ok(self, response: Any) -> None:
        """Terminate with OK and ``response`` (unary RPC)."""
        self.rpc.terminate(response, (), grpc.StatusCode.OK, "")


class FakeActionService:
    """Runs sync client calls in a worker thread and lets the test answer each RPC."""

    def __init__(
        self,
        retry: RetryPolicy = FAST_RETRIES,
        token: str | Callable[[], str] = "test-token",  # noqa: S107
    ) -> None:
        self.channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
        config = ClientConfig(target="unused:1", token=token, retry=retry)
        self.client = ActionsClient(config, channel=self.channel)
        self._pool = ThreadPoolExecutor(max_workers=2)

    def start(self, call: Callable[[ActionsClient], T]) -> Future[T]:
        """Start ``call(client)`` in the worker thread."""
        return self._pool.submit(call, self.client)

    def take(self, method: str) -> Taken:
        """Wait for the client's next ``method`` unary call."""
        metadata, request, rpc = self.channel.take_unary_unary(SERVICE.methods_by_name[method])
        return Taken(dict(metadata), request, rpc)

    def take_stream(self, method: str) -> Taken:
        """Wait for the client's next ``method`` server-streaming call."""
        metadata, request, rpc = self.channel.take_unary_stream(SERVICE.methods_by_name[method])
        return Taken(dict(metadata), request, rpc)

    def close(self) -> None:
        """Stop the worker thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def fake_service(**kwargs: Any) -> Iterator[FakeActionService]:
    """Fixture body: a fake service closed after the test."""
    fake = FakeActionService(**kwargs)
    try:
        yield fake
    finally:
        fake.close()
