"""Build the policy service's gRPC server (unstarted)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc
from grpc_health.v1 import health

from services.common import server as common
from services.policy.settings import PolicySettings

SERVICE_NAME = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name


@dataclass
class PolicyServer:
    """The server, its health servicer and the port it bound."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int


async def build_server(settings: PolicySettings) -> PolicyServer:
    """Create the server with health, reflection and the PolicyService bound to its address."""
    server = common.new_server()
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(
        policy_pb2_grpc.PolicyServiceServicer(),  # type: ignore[abstract]
        server,
    )
    health_servicer = common.add_health_and_reflection(server, [SERVICE_NAME])
    port = common.bind(server, settings.listen_addr, settings.tls)
    return PolicyServer(server, health_servicer, port)


async def serve(settings: PolicySettings) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    built = await build_server(settings)
    await built.server.start()
    await common.set_serving(built.health, [SERVICE_NAME], True)
    await common.wait_for_termination_signal()
    await common.set_serving(built.health, [SERVICE_NAME], False)
    await built.server.stop(grace=10)
