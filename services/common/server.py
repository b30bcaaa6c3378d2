"""What both gRPC servers share: message limits, health, reflection, TLS, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import reflection
from services.common.observe import Observer, observed

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024 * 1024


# HTTP/2 streams one client connection may keep open at once (watch streams included).
MAX_CONCURRENT_STREAMS = 1000


def server_options(
    max_receive_bytes: int = MAX_MESSAGE_BYTES,
    max_send_bytes: int = MAX_MESSAGE_BYTES,
    max_concurrent_streams: int = MAX_CONCURRENT_STREAMS,
) -> list[tuple[str, int]]:
    """The channel arguments of every Fleetward server."""
    return [
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", max_send_bytes),
        ("grpc.max_concurrent_streams", max_concurrent_streams),
        ("grpc.so_reuseport", 0),
    ]


# Imported so that server reflection can resolve the error-detail types of our statuses
# (grpcurl -format-error decodes ErrorInfo, BadRequest, PreconditionFailure through it).
ERROR_DETAIL_TYPES = (error_details_pb2.DESCRIPTOR.name,)


@dataclass(frozen=True)
class ServerTls:
    """Server certificate and key, and optionally a CA whose client certificates are required."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Build the server credentials (mTLS when a client CA is set)."""
        root = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=root,
            require_client_auth=root is not None,
        )


def new_server(
    max_receive_bytes: int = MAX_MESSAGE_BYTES,
    max_send_bytes: int = MAX_MESSAGE_BYTES,
    *,
    max_concurrent_streams: int = MAX_CONCURRENT_STREAMS,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> grpc.aio.Server:
    """An unstarted ``grpc.aio`` server with Fleetward's options.

    No interceptors but tracing's (:mod:`services.common.tracing`, only when it is on): any
    interceptor costs every RPC, see :mod:`services.common.observe`.
    """
    options = server_options(max_receive_bytes, max_send_bytes, max_concurrent_streams)
    return grpc.aio.server(options=options, interceptors=list(interceptors) or None)


def add_health_and_reflection(
    server: grpc.aio.Server, service_names: Sequence[str], observers: Sequence[Observer] = ()
) -> health.aio.HealthServicer:
    """Register grpc.health.v1 (every service starts NOT_SERVING) and server reflection.

    Health RPCs report to ``observers``; reflection (a bidirectional stream) does not.
    """
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(
        observed(servicer, health.SERVICE_NAME, observers), server
    )
    reflection.enable(server, [*service_names, health.SERVICE_NAME])
    return servicer


async def set_serving(
    servicer: health.aio.HealthServicer, service_names: Sequence[str], serving: bool
) -> None:
    """Set the overall status ("") and each named service's status."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *service_names):
        await servicer.set(name, status)


def bind(server: grpc.aio.Server, address: str, tls: ServerTls | None) -> int:
    """Bind ``address`` (port 0 picks a free port); return the bound port."""
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.credentials())
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    return port


async def wait_for_termination_signal() -> None:
    """Return on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
