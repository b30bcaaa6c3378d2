"""``python -m bench.otlp_sink``: an OTLP/gRPC trace receiver that counts and drops.

What ``python -m bench --tracing`` points both services' exporter at: the services pay
everything a deployment's tracing costs them (interceptors, spans, the batching
processor, protobuf encoding, the export call) and nothing is stored. A real collector is
not on this machine; an unreachable endpoint would measure retries and dropped batches
instead. Prints the bound port on stdout, serves until SIGTERM, then prints one JSON line
with what it received.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class _Counts:
    def __init__(self) -> None:
        self.exports = 0
        self.spans = 0
        self.bytes = 0

    async def export(self, request: bytes, context: Any) -> bytes:
        self.exports += 1
        self.bytes += len(request)
        parsed = trace_service_pb2.ExportTraceServiceRequest.FromString(request)
        self.spans += sum(
            len(scope.spans) for resource in parsed.resource_spans for scope in resource.scope_spans
        )
        return b""  # an empty ExportTraceServiceResponse: everything accepted


async def _serve() -> None:
    counts = _Counts()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(counts.export)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)
    print(json.dumps(vars(counts)), flush=True)


if __name__ == "__main__":
    asyncio.run(_serve())
