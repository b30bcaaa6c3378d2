"""Both servers' shared TLS plumbing: TLS, and mTLS that refuses clients without a certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import server as common
from services.common.server import ServerTls
from tests.tls import TlsFiles, make_tls_files


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path)


async def _serve(tls: ServerTls) -> AsyncIterator[int]:
    server = common.new_server()
    health = common.add_health_and_reflection(server, [])
    port = common.bind(server, "127.0.0.1:0", tls)
    await server.start()
    await common.set_serving(health, [], True)
    try:
        yield port
    finally:
        await server.stop(None)


async def _health(port: int, creds: grpc.ChannelCredentials) -> int:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)  # type: ignore[attr-defined]
        return int(reply.status)


async def test_tls_server_answers_a_client_that_trusts_its_ca(tls_files: TlsFiles) -> None:
    tls = ServerTls(tls_files.server_cert, tls_files.server_key)
    async for port in _serve(tls):
        creds = grpc.ssl_channel_credentials(root_certificates=tls_files.ca_cert.read_bytes())
        assert await _health(port, creds) == health_pb2.HealthCheckResponse.SERVING


async def test_mtls_server_refuses_a_client_without_certificate(tls_files: TlsFiles) -> None:
    tls = ServerTls(tls_files.server_cert, tls_files.server_key, tls_files.ca_cert)
    async for port in _serve(tls):
        no_cert = grpc.ssl_channel_credentials(root_certificates=tls_files.ca_cert.read_bytes())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _health(port, no_cert)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=tls_files.ca_cert.read_bytes(),
            private_key=tls_files.client_key.read_bytes(),
            certificate_chain=tls_files.client_cert.read_bytes(),
        )
        assert await _health(port, with_cert) == health_pb2.HealthCheckResponse.SERVING
