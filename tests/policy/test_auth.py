"""Only service callers may ask; health and reflection stay open."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import jwt
import pytest
from fleetward.policy.v1 import policy_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.token_claims import SERVICE_AUDIENCE
from tests.conftest import Secrets
from tests.policy.conftest import AGENT, DEMO_WS, REPO_ROOT, RunningPolicy, bearer
from tests.policy.test_invalid_requests import decode

CHECK = policy_pb2.CheckRequest(
    subject="alice", workspace_id=DEMO_WS, action="actions:read", resource=AGENT
)


def _token(secret: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "svc:actions", "aud": SERVICE_AUDIENCE, "iat": now, "exp": now + 60}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, "HS256")


def _bad_callers(secrets: Secrets) -> dict[str, tuple[tuple[str, str], ...]]:
    service = secrets.service_jwt_secret
    return {
        "no token": (),
        "not bearer": (("authorization", "Basic YWxpY2U6c2VjcmV0"),),
        "garbage": bearer("not-a-jwt"),
        "user token": bearer(secrets.user_token("bob")),
        "user token with svc subject": bearer(_token(secrets.jwt_secret)),
        "user token as svc for policy audience": bearer(
            _token(secrets.jwt_secret, sub="svc:actions")
        ),
        "service secret, user subject": bearer(_token(service, sub="bob")),
        "service secret, wrong audience": bearer(_token(service, aud="fleetward")),
        "service secret, no audience": bearer(_token(service, aud=None)),
        "expired service token": bearer(_token(service, exp=int(time.time()) - 120)),
        "other algorithm": bearer(jwt.encode({"sub": "svc:x"}, "", algorithm="none")),
    }


@pytest.mark.parametrize(
    "caller",
    [
        "no token",
        "not bearer",
        "garbage",
        "user token",
        "user token with svc subject",
        "user token as svc for policy audience",
        "service secret, user subject",
        "service secret, wrong audience",
        "service secret, no audience",
        "expired service token",
        "other algorithm",
    ],
)
async def test_non_service_callers_are_refused(
    demo: RunningPolicy, dev_secrets: Secrets, caller: str
) -> None:
    metadata = _bad_callers(dev_secrets)[caller]
    calls = [
        demo.stub.Check(CHECK, metadata=metadata),
        demo.stub.BatchCheck(policy_pb2.BatchCheckRequest(checks=[CHECK]), metadata=metadata),
        demo.stub.GetPolicyInfo(policy_pb2.GetPolicyInfoRequest(), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        info, _ = decode(caught.value)
        assert info.reason == "UNAUTHENTICATED"


async def test_authentication_comes_before_validation(demo: RunningPolicy) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await demo.stub.Check(policy_pb2.CheckRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_needs_no_token(demo: RunningPolicy) -> None:
    stub: Any = health_pb2_grpc.HealthStub(demo.channel)
    for service in ("", "fleetward.policy.v1.PolicyService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_grpcurl_lists_services_without_a_token(demo: RunningPolicy) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(REPO_ROOT / ".venv" / "bin" / "grpcurl"),
        "-plaintext",
        demo.target,
        "list",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "fleetward.policy.v1.PolicyService" in out.decode().split()


async def test_a_user_token_is_told_to_send_a_service_token(
    demo: RunningPolicy, dev_secrets: Secrets
) -> None:
    for token in (dev_secrets.user_token("bob"), dev_secrets.user_token("alice", audience="fw")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await demo.stub.Check(CHECK, metadata=bearer(token))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert decode(caught.value)[0].reason == "UNAUTHENTICATED"
        assert caught.value.details() == (
            "this is the policy service: it takes service tokens (subject svc:NAME, signed "
            "with FLEETWARD_SERVICE_JWT_SECRET); this looks like a user token. "
            "Dev: make token SUB=svc:debug"
        )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-jwt", "invalid service token: not a well-formed JWT"),
        ("e30.e30.c2ln", "invalid service token: algorithm not accepted"),
    ],
)
async def test_garbage_keeps_the_generic_refusal(
    demo: RunningPolicy, token: str, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await demo.stub.Check(CHECK, metadata=bearer(token))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert decode(caught.value)[0].reason == "UNAUTHENTICATED"
    assert caught.value.details() == message


async def test_a_service_token_under_the_wrong_key_keeps_the_generic_refusal(
    demo: RunningPolicy, dev_secrets: Secrets
) -> None:
    # It is the kind this service takes: only its signature is wrong.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await demo.stub.Check(CHECK, metadata=bearer(_token(dev_secrets.jwt_secret)))
    assert caught.value.details() == "invalid service token: bad signature"
