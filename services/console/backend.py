"""The console's one way to the action service: ``fleetward.client`` with the caller's token.

One gRPC channel is shared by every request; each request gets a client carrying its own
caller's token, so every call is authorized as that user and the console adds no right.
"""

from __future__ import annotations

import asyncio

import grpc
from fleetward.actions.v1 import actions_pb2
from fleetward.client import AsyncActionsClient, ClientConfig, TlsConfig
from fleetward.client._async.transport import open_channel

from services.console.identity import Caller
from services.console.settings import ConsoleSettings

# A page waits at most this long for the action service before it shows the error.
DEADLINE_S = 5.0


class Backend:
    """The shared channel, per-caller clients and the (caller-independent) action catalog."""

    def __init__(self, settings: ConsoleSettings) -> None:
        tls = TlsConfig.from_files(ca=settings.actions_ca) if settings.actions_ca else None
        self._base = ClientConfig(
            target=settings.actions_target, tls=tls, default_deadline=DEADLINE_S
        )
        self._channel: grpc.aio.Channel | None = None
        self._catalog: list[actions_pb2.ActionType] | None = None
        self._catalog_lock = asyncio.Lock()

    def _shared_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = open_channel(self._base)
        return self._channel

    def client(self, caller: Caller | str) -> AsyncActionsClient:
        """A client that calls as ``caller`` (or with this bearer token) over the shared
        channel; closing it keeps the channel open.
        """
        config = ClientConfig(
            target=self._base.target,
            token=caller.token if isinstance(caller, Caller) else caller,
            tls=self._base.tls,
            default_deadline=DEADLINE_S,
        )
        return AsyncActionsClient(config, channel=self._shared_channel())

    async def catalog(self, caller: Caller) -> list[actions_pb2.ActionType]:
        """The action types (the same for every caller; fetched once, as ``caller``)."""
        async with self._catalog_lock:
            if self._catalog is None:
                self._catalog = await self.client(caller).list_action_types()
            return self._catalog

    async def close(self) -> None:
        """Close the shared channel."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()
