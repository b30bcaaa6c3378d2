"""With a client CA configured, a verified client certificate identifies a service caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.common.server import ServerTls
from tests.conftest import Secrets
from tests.policy.conftest import AGENT, DEMO_WS, StartPolicy, bearer
from tests.tls import make_tls_files

CHECK = policy_pb2.CheckRequest(
    subject="bob", workspace_id=DEMO_WS, action="actions:pause_agent", resource=AGENT
)


async def test_client_certificate_is_a_service_identity(
    start_policy: StartPolicy, tmp_path: Path, dev_secrets: Secrets
) -> None:
    pki = make_tls_files(tmp_path)
    tls = ServerTls(pki.server_cert, pki.server_key, pki.ca_cert)
    async with start_policy(tls=tls) as running:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca_cert.read_bytes(),
            private_key=pki.client_key.read_bytes(),
            certificate_chain=pki.client_cert.read_bytes(),
        )
        async with grpc.aio.secure_channel(running.target, credentials) as channel:
            stub: Any = policy_pb2_grpc.PolicyServiceStub(channel)
            reply = await stub.Check(CHECK)  # no token: the certificate authenticates
            assert reply.allowed
            with_service_token = await stub.Check(
                CHECK, metadata=bearer(dev_secrets.service_token())
            )
            assert with_service_token.allowed
            # A token that is present must be a valid service token, certificate or not.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Check(CHECK, metadata=bearer(dev_secrets.user_token("bob")))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
        async with grpc.aio.secure_channel(running.target, anonymous) as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Check(CHECK, metadata=bearer(dev_secrets.service_token()), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # no handshake
