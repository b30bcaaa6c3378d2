"""``python -m services.common.healthcheck HOST:PORT``: exit 0 when the gRPC server there
answers ``grpc.health.v1`` with SERVING, 1 otherwise (a container's HEALTHCHECK; on
Kubernetes use the native gRPC probe instead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, *, service: str = "", ca: Path | None = None, timeout: float = 3.0) -> bool:
    """Whether ``target`` reports ``service`` (the whole server when empty) as SERVING."""
    if ca is None:
        channel = grpc.insecure_channel(target)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        channel = grpc.secure_channel(target, credentials)
    with channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the typeshed stub lists no methods
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and check once."""
    parser = argparse.ArgumentParser(prog="python -m services.common.healthcheck")
    parser.add_argument("target", metavar="HOST:PORT")
    parser.add_argument("--service", default="", help="a service name (default: the server)")
    parser.add_argument("--tls-ca", type=Path, help="CA bundle (PEM): check over TLS")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    serving = check(args.target, service=args.service, ca=args.tls_ca, timeout=args.timeout)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
