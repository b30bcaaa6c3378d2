"""A TCP proxy that can cut the connection right after the server answered a call.

It forwards client bytes unchanged and parses the server's HTTP/2 frames. When armed, the
first HEADERS frame on a stream (a response: gRPC sends it only once the handler has
finished) is swallowed and both sockets are aborted, so the server has acted but the
client never hears about it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

FRAME_HEADER = 9
HEADERS = 0x1


class CuttingProxy:
    """``armed`` → the next response is lost with the connection; ``cuts`` counts them."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self.armed = False
        self.cuts = 0
        self.connections = 0

    async def _pump_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _pump_down(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
    ) -> None:
        buffer = b""
        while data := await reader.read(65536):
            buffer += data
            while len(buffer) >= FRAME_HEADER:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) < FRAME_HEADER + length:
                    break
                frame, buffer = buffer[: FRAME_HEADER + length], buffer[FRAME_HEADER + length :]
                stream_id = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
                if self.armed and frame[3] == HEADERS and stream_id:
                    self.armed = False
                    self.cuts += 1
                    writer.transport.abort()
                    upstream.transport.abort()
                    return
                writer.write(frame)
            await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        tasks = [
            asyncio.create_task(self._pump_up(reader, up_writer)),
            asyncio.create_task(self._pump_down(up_reader, writer, up_writer)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Listen on a free port; yield the proxy's target."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
