"""A real policy service behind an in-process proxy that tests can slow, stall or tamper with."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
from fleetward.policy.v1 import policy_pb2_grpc

from services.policy.server import PolicyServer
from tests.conftest import Secrets
from tests.servers import running_policy_server_handle

P = TypeVar("P", bound=policy_pb2_grpc.PolicyServiceServicer)


async def proxied_policy(
    stack: contextlib.AsyncExitStack,
    policy_dir: Path,
    secrets: Secrets,
    proxy_of: Callable[[policy_pb2_grpc.PolicyServiceStub], P],
) -> tuple[PolicyServer, P, str]:
    """A policy service on ``policy_dir`` and, on port 0 in front of it, the servicer
    ``proxy_of(stub of the real one)``; both stop with ``stack``.

    Returns:
        The real server, the proxy servicer and the proxy's ``host:port``.
    """
    real = await stack.enter_async_context(running_policy_server_handle(policy_dir, secrets))
    upstream = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{real.port}"))
    proxy = proxy_of(policy_pb2_grpc.PolicyServiceStub(upstream))
    server = grpc.aio.server()
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(proxy, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stack.push_async_callback(server.stop, 0)
    return real, proxy, f"127.0.0.1:{port}"
