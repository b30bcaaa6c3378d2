"""Authentication: every bad token is UNAUTHENTICATED and nothing is written."""

from __future__ import annotations

import time

import asyncpg
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fleetward.actions.v1 import actions_pb2

from tests.actions.helpers import Api, counts, details, execute_request
from tests.conftest import NewWorkspace, Secrets


def _tokens(secrets: Secrets) -> dict[str, str | None]:
    now = int(time.time())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "missing": None,
        "not_bearer": "Basic Ym9iOnB3",
        "empty_bearer": "Bearer ",
        "garbage": "Bearer not.a.jwt",
        "expired": "Bearer "
        + jwt.encode({"sub": "bob", "exp": now - 60}, secrets.jwt_secret, algorithm="HS256"),
        "no_exp": "Bearer " + jwt.encode({"sub": "bob"}, secrets.jwt_secret, algorithm="HS256"),
        "wrong_key": "Bearer "
        + jwt.encode({"sub": "bob", "exp": now + 600}, "another-secret-" * 3, algorithm="HS256"),
        "alg_none": "Bearer "
        + jwt.encode({"sub": "bob", "exp": now + 600}, None, algorithm="none"),  # type: ignore[arg-type]
        "unknown_rsa_key": "Bearer "
        + jwt.encode({"sub": "bob", "exp": now + 600}, rsa_key, algorithm="RS256"),
        "service_key": "Bearer "
        + jwt.encode(
            {"sub": "bob", "exp": now + 600}, secrets.service_jwt_secret, algorithm="HS256"
        ),
        "reserved_subject": "Bearer " + secrets.user_token("svc:actions"),
        "control_char_subject": "Bearer " + secrets.user_token("bob\x00"),
        "huge_subject": "Bearer " + secrets.user_token("b" * 300),
        # The policy service refuses these subjects: the action service must too, as
        # UNAUTHENTICATED, not relay a retryable POLICY_UNAVAILABLE with its reasons.
        "padded_subject": "Bearer " + secrets.user_token("bob "),
        "zero_width_subject": "Bearer " + secrets.user_token("bob\u200b"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not_bearer",
        "empty_bearer",
        "garbage",
        "expired",
        "no_exp",
        "wrong_key",
        "alg_none",
        "unknown_rsa_key",
        "service_key",
        "reserved_subject",
        "control_char_subject",
        "huge_subject",
        "padded_subject",
        "zero_width_subject",
    ],
)
async def test_bad_token_is_unauthenticated_and_writes_nothing(
    case: str, api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace, dev_secrets: Secrets
) -> None:
    ws = await new_workspace()
    before = await counts(pool, ws.id)
    header = _tokens(dev_secrets)[case]
    metadata = () if header is None else (("authorization", header),)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.Execute(
            execute_request(ws.id, "pause_agent", target="eng-code-1"),
            metadata=metadata,
            timeout=5,
        )
    d = details(err.value)
    assert d.code == grpc.StatusCode.UNAUTHENTICATED
    assert (d.reason, d.domain, d.error_infos) == ("UNAUTHENTICATED", "fleetward", 1)
    assert await counts(pool, ws.id) == before


async def test_reads_and_catalog_need_a_token(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.ListActionTypes(actions_pb2.ListActionTypesRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.ListAgents(
            actions_pb2.ListAgentsRequest(workspace_id="ac3e0000-0000-4000-8000-000000000001"),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
