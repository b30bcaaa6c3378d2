"""Only service callers may use the policy service (docs/architecture.md §3, §8)."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.common.token_claims import SERVICE_AUDIENCE
from services.policy.server import build_server
from services.policy.settings import PolicySettings
from tests.actions.helpers import details
from tests.conftest import Secrets
from tests.reliability import counters
from tests.servers import write_test_policy

C = grpc.StatusCode


def non_service_tokens(secrets: Secrets) -> dict[str, str | None]:
    """Every caller that is not a service, and service tokens that are not valid."""
    now = int(time.time())
    svc = {"sub": "svc:actions", "aud": SERVICE_AUDIENCE, "iat": now, "exp": now + 300}
    return {
        "no token": None,
        "user token": secrets.user_token("alice"),
        "user token for a service subject": secrets.user_token("svc:actions"),
        "service claims signed with the user key": jwt.encode(
            svc, secrets.jwt_secret, algorithm="HS256"
        ),
        "expired service token": jwt.encode(
            {**svc, "exp": now - 60}, secrets.service_jwt_secret, algorithm="HS256"
        ),
        "service token for another audience": jwt.encode(
            {**svc, "aud": "fleetward-actions"}, secrets.service_jwt_secret, algorithm="HS256"
        ),
        "service token without audience": jwt.encode(
            {k: v for k, v in svc.items() if k != "aud"},
            secrets.service_jwt_secret,
            algorithm="HS256",
        ),
        "alg none": jwt.encode(svc, None, algorithm="none"),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("rpc", ["Check", "BatchCheck", "GetPolicyInfo"])
async def test_a_non_service_caller_cannot_use_the_policy_service(
    rel_policy_target: str, dev_secrets: Secrets, rpc: str
) -> None:
    check = policy_pb2.CheckRequest(
        subject="alice",
        workspace_id="ac3e0000-0000-4000-8000-000000000001",
        action="actions:read",
        resource="fleet",
    )
    requests = {
        "Check": check,
        "BatchCheck": policy_pb2.BatchCheckRequest(checks=[check]),
        "GetPolicyInfo": policy_pb2.GetPolicyInfoRequest(),
    }
    async with grpc.aio.insecure_channel(rel_policy_target) as channel:
        method = getattr(policy_pb2_grpc.PolicyServiceStub(channel), rpc)
        ok = await method(
            requests[rpc],
            metadata=(("authorization", f"Bearer {dev_secrets.service_token()}"),),
            timeout=5,
        )
        assert ok is not None
        for name, token in non_service_tokens(dev_secrets).items():
            md = () if token is None else (("authorization", f"Bearer {token}"),)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await method(requests[rpc], metadata=md, timeout=5)
            counters.record("requests")
            info = details(caught.value)
            assert (info.code, info.reason) == (C.UNAUTHENTICATED, "UNAUTHENTICATED"), name


async def test_only_the_listed_service_subjects_may_ask(
    tmp_path_factory: pytest.TempPathFactory, dev_secrets: Secrets
) -> None:
    # A valid service token is not enough: its subject must be an allowed caller. A leaked
    # token of some other internal service (or one minted for debugging) cannot ask.
    settings = PolicySettings(
        listen_addr="127.0.0.1:0",
        policy_dir=write_test_policy(tmp_path_factory.mktemp("callers")),
        service_jwt_secret=dev_secrets.service_jwt_secret,
        decision_log="off",
        watch=False,
    )  # the default: svc:actions only
    built = await build_server(settings)
    await built.start()
    request = policy_pb2.GetPolicyInfoRequest()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            for name in ("svc:actions",):
                token = dev_secrets.service_token(name)
                assert await stub.GetPolicyInfo(request, metadata=_bearer(token), timeout=5)
            for name in ("svc:debug", "svc:billing", "svc:Actions"):
                token = dev_secrets.service_token(name)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.GetPolicyInfo(request, metadata=_bearer(token), timeout=5)
                info = details(caught.value)
                assert (info.code, info.reason) == (C.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
                assert info.metadata["caller"] == name
    finally:
        await built.stop(grace=0)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
