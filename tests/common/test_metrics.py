"""Observed servicers count RPCs by method and code on a real server."""

from __future__ import annotations

import asyncio

import grpc
import prometheus_client
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import server as common
from services.common.metrics import record_rpc

CHECK = "/grpc.health.v1.Health/Check"


def _count(code: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "fleetward_rpc_requests_total", {"method": CHECK, "code": code}
    )
    return value or 0.0


async def test_rpcs_are_counted_by_method_and_code() -> None:
    server = common.new_server()
    health = common.add_health_and_reflection(server, ["test.Service"], [record_rpc])
    port = common.bind(server, "127.0.0.1:0", None)
    await server.start()
    try:
        await common.set_serving(health, ["test.Service"], True)
        ok_before, missing_before = _count("OK"), _count("NOT_FOUND")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(service="test.Service"))  # type: ignore[attr-defined]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Check(health_pb2.HealthCheckRequest(service="nope"))  # type: ignore[attr-defined]
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # The server records an RPC once its handler has returned, which may be just after
        # the client has its answer: wait (boundedly) for the counters to catch up.
        for _ in range(200):
            if (_count("OK"), _count("NOT_FOUND")) == (ok_before + 1, missing_before + 1):
                break
            await asyncio.sleep(0.01)
        assert _count("OK") == ok_before + 1
        assert _count("NOT_FOUND") == missing_before + 1
    finally:
        await server.stop(None)
