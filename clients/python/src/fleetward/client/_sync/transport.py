# GENERATED from _async/transport.py by clients/python/scripts/unasync.py. Do not edit.
"""The one funnel every RPC goes through: metadata, deadline, retries, error decoding."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self, TypeVar

import grpc

from fleetward.client import _tracing
from fleetward.client._core import (
    Attempts,
    Retry,
    call_metadata,
    channel_credentials,
    channel_options,
    is_reconnectable,
)
from fleetward.client.config import ClientConfig
from fleetward.client.errors import FleetwardError, Unavailable, error_from_rpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def open_channel(config: ClientConfig) -> grpc.Channel:
    """Open a channel to ``config.target`` (TLS when ``config.tls`` is set), sending the
    current trace context when OpenTelemetry is installed (:mod:`fleetward.client._tracing`).
    """
    return _tracing.open_channel(
        config.target, channel_credentials(config), channel_options(config)
    )


class SyncTransport:
    """Owns the channel and runs calls with retries; raises only ``FleetwardError``."""

    def __init__(self, config: ClientConfig, channel: grpc.Channel | None = None) -> None:
        self.config = config
        self._owns_channel = channel is None
        self._channel = channel
        self._rng = random.Random()

    @property
    def channel(self) -> grpc.Channel:
        """The channel, opened on first use (so a client may be built outside a loop)."""
        if self._channel is None:
            self._channel = open_channel(self.config)
        return self._channel

    def close(self) -> None:
        """Close the channel if this transport opened it."""
        if self._owns_channel and self._channel is not None:
            channel, self._owns_channel = self._channel, False  # close once
            channel.close()

    def unary(
        self,
        method: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        retry: Retry,
        deadline: float | None,
    ) -> Resp:
        """Call ``method`` once per attempt with the same ``request`` until it succeeds,
        fails for good, or the overall deadline is spent.
        """
        attempts = Attempts(self.config, deadline, self._rng)
        while True:
            timeout = attempts.start()
            try:
                return method(request, timeout=timeout, metadata=call_metadata(self.config))
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            delay = attempts.delay_before_retry(error, retry)
            if delay is None:
                raise error
            time.sleep(delay)

    def watch(
        self,
        method: grpc.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        resume: Callable[[Req, Resp], Req],
        max_reconnects: int | None,
    ) -> Iterator[Resp]:
        """Stream ``method`` forever, reconnecting after UNAVAILABLE or a clean end.

        After each item, ``resume(request, item)`` becomes the request of the next
        connection, so a reconnect continues after the last item seen. Gives up after
        ``max_reconnects`` consecutive reconnects without an item (``None``: never).
        """
        failures = 0
        while True:
            call = method(request, metadata=call_metadata(self.config))
            error: FleetwardError | None = None
            try:
                for item in call:
                    failures = 0
                    request = resume(request, item)
                    yield item
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            finally:
                call.cancel()
            if error is not None and not is_reconnectable(error):
                raise error
            failures += 1
            if max_reconnects is not None and failures > max_reconnects:
                raise error or Unavailable("the stream ended and could not be resumed")
            time.sleep(self.config.retry.backoff(failures, self._rng))


class SyncClientBase:
    """What every client shares: its transport, the context manager and ``close``."""

    def __init__(self, config: ClientConfig, *, channel: grpc.Channel | None = None) -> None:
        self._transport = SyncTransport(config, channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel (when the client opened it)."""
        self._transport.close()
