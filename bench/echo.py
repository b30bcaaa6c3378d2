"""``python -m bench.echo``: a bare grpc.aio server whose one method returns its request.

No protobuf, no interceptors, no auth: the floor any gRPC round trip pays. Prints the
bound port on stdout, then serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import grpc

METHOD = "/bench.Echo/Echo"


async def _echo(request: bytes, context: Any) -> bytes:
    # A coroutine, as our servicers are: grpc.aio runs a plain function handler in a
    # thread pool, which would add ~0.15 ms to every floor round trip.
    return request


async def _serve() -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(_serve())
