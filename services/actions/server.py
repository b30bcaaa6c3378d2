"""Build the action service's gRPC server (unstarted)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from grpc_health.v1 import health

from services.actions.settings import ActionSettings
from services.common import server as common

SERVICE_NAME = actions_pb2.DESCRIPTOR.services_by_name["ActionService"].full_name


@dataclass
class ActionServer:
    """The server, its health servicer and the port it bound."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int


async def build_server(settings: ActionSettings) -> ActionServer:
    """Create the server with health, reflection and the ActionService bound to its address."""
    server = common.new_server()
    # Until the servicer is built every RPC answers UNIMPLEMENTED (the generated base class).
    actions_pb2_grpc.add_ActionServiceServicer_to_server(
        actions_pb2_grpc.ActionServiceServicer(),  # type: ignore[abstract]
        server,
    )
    health_servicer = common.add_health_and_reflection(server, [SERVICE_NAME])
    port = common.bind(server, settings.listen_addr, settings.tls)
    return ActionServer(server, health_servicer, port)


async def serve(settings: ActionSettings) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    built = await build_server(settings)
    await built.server.start()
    await common.set_serving(built.health, [SERVICE_NAME], True)
    await common.wait_for_termination_signal()
    await common.set_serving(built.health, [SERVICE_NAME], False)
    await built.server.stop(grace=10)
