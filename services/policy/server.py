"""Build and run the policy service's gRPC server.

``build_server`` returns an unstarted server; ``PolicyServer.start`` starts it, does the
first load and only then reports SERVING (a failed first load stays NOT_SERVING, Check
answers UNAVAILABLE, and the watcher keeps trying).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from fleetward.policy.v1 import policy_pb2
from grpc_health.v1 import health

from services.common import logs, tracing
from services.common import server as common
from services.common.metrics import record_rpc, start_metrics_server
from services.common.registration import add_servicer
from services.policy import decision_log, queries
from services.policy.auth import CallerAuthenticator
from services.policy.loader import PolicySnapshot
from services.policy.reload import Reloader
from services.policy.servicer import PolicyServicer
from services.policy.settings import PolicySettings

SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"]
SERVICE_NAME = SERVICE.full_name
log = logging.getLogger(__name__)


@dataclass
class PolicyServer:
    """The server, its health servicer, the port it bound and the policy reloader."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    reloader: Reloader
    settings: PolicySettings

    async def start(self) -> bool:
        """Start serving, load the policy, then report SERVING; returns whether it loaded."""
        await self.server.start()
        loaded = await self.reloader.reload()
        if self.settings.watch:
            self.reloader.start_watching()
        return loaded

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop reloading, let in-flight RPCs finish within ``grace``.

        Then flush the decision log, so every decision answered so far is written.
        """
        await common.set_serving(self.health, [SERVICE_NAME], False)
        await self.reloader.stop()
        await self.server.stop(self.settings.shutdown_grace_s if grace is None else grace)
        if not await asyncio.to_thread(decision_log.flush):
            log.error("the decision log sink did not take the last lines in time")


async def build_server(
    settings: PolicySettings, traced: tracing.Tracing = tracing.OFF
) -> PolicyServer:
    """Create the server with health, reflection and the PolicyService bound to its address.

    ``traced`` (installed, :func:`services.common.tracing.start`) adds its server
    interceptor; off, there is none.

    Raises:
        ValueError: When no caller could ever authenticate (no service secret, no mTLS).
    """
    mtls = settings.tls is not None and settings.tls.client_ca_file is not None
    authenticator = CallerAuthenticator(
        service_jwt_secret=settings.service_jwt_secret,
        mtls=mtls,
        allowed_callers=settings.allowed_callers,
    )
    server = common.new_server(
        queries.MAX_REQUEST_BYTES,
        queries.MAX_RESPONSE_BYTES,
        interceptors=traced.server_interceptors(),
    )
    observers = (record_rpc, *traced.observers())
    health_servicer = common.add_health_and_reflection(server, [SERVICE_NAME], observers)
    await common.set_serving(health_servicer, [SERVICE_NAME], False)  # until the first load

    async def on_loaded(snapshot: PolicySnapshot) -> None:
        await common.set_serving(health_servicer, [SERVICE_NAME], True)

    reloader = Reloader(
        settings.policy_dir, debounce_ms=settings.reload_debounce_ms, on_loaded=on_loaded
    )
    servicer = PolicyServicer(reloader.state, authenticator)
    add_servicer(server, servicer, SERVICE, observers)
    port = common.bind(server, settings.listen_addr, settings.tls)
    return PolicyServer(server, health_servicer, port, reloader, settings)


async def serve(settings: PolicySettings) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully; SIGHUP reloads the policy."""
    logs.configure("policy", settings.log_level)
    decision_log.configure(settings.decision_log)
    traced = tracing.start(settings.tracing)
    try:
        built = await build_server(settings, traced)
        start_metrics_server(settings.metrics_port, settings.metrics_addr)
        built.reloader.install_sighup()
        if not await built.start():
            log.error("no policy loaded; NOT_SERVING until the files are fixed")
        log.info("policy service listening on port %d", built.port)
        await common.wait_for_termination_signal()
        log.info("shutting down")
        try:
            await built.stop()
        finally:
            await asyncio.to_thread(decision_log.stop)
    finally:
        traced.shutdown()  # flushes the spans still queued
