"""Both clients against the real services: one adapter so every case runs on each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fleetward.client import (
    ActionsClient,
    AsyncActionsClient,
    AsyncPolicyClient,
    ClientConfig,
    PolicyClient,
    RetryPolicy,
)

FAST = RetryPolicy(max_attempts=8, initial_backoff=0.05, max_backoff=0.5)


class Either:
    """Calls one method of the async client directly or of the sync client in a thread.

    The test servers run in the test's event loop, so a blocking call must leave it.
    """

    def __init__(self, client: Any, *, sync: bool) -> None:
        self.client = client
        self.sync = sync

    async def call(self, method: str, **kwargs: Any) -> Any:
        """``client.<method>(**kwargs)``, awaited."""
        bound: Callable[..., Any] = getattr(self.client, method)
        if self.sync:
            return await asyncio.to_thread(lambda: bound(**kwargs))
        return await bound(**kwargs)

    async def collect(self, method: str, **kwargs: Any) -> list[Any]:
        """Every item of the iterator ``client.<method>(**kwargs)``."""
        bound: Callable[..., Any] = getattr(self.client, method)
        if self.sync:
            return await asyncio.to_thread(lambda: list(bound(**kwargs)))
        return [item async for item in bound(**kwargs)]

    async def close(self) -> None:
        """Close the client."""
        if self.sync:
            self.client.close()
        else:
            await self.client.close()


def actions_client(target: str, token: str, *, sync: bool, **config: Any) -> Either:
    """An actions client of either kind for ``token``."""
    settings = ClientConfig(target=target, token=token, retry=FAST, **config)
    return Either(ActionsClient(settings) if sync else AsyncActionsClient(settings), sync=sync)


def policy_client(target: str, token: str | None, *, sync: bool, **config: Any) -> Either:
    """A policy client of either kind for ``token``."""
    settings = ClientConfig(target=target, token=token, retry=FAST, **config)
    return Either(PolicyClient(settings) if sync else AsyncPolicyClient(settings), sync=sync)
