"""Forged tokens are UNAUTHENTICATED on every ActionService RPC and write nothing
(docs/architecture.md §8).

The action service here accepts HS256 user tokens AND RS256 tokens from a JWKS file,
with an audience: the setup where algorithm confusion and audience mistakes matter.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc

from tests.actions.helpers import details, execute_request
from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.harness import create_workspace, writes
from tests.servers import running_action_server

# The forged HS512 token reuses the (short for SHA-512) HS256 test secret on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

AUDIENCE = "fleetward-actions"
KID = "rel-key-1"
C = grpc.StatusCode


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """The identity provider's signing key (its public half is in the JWKS file)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
async def strict_stub(
    tmp_path_factory: pytest.TempPathFactory,
    rsa_key: rsa.RSAPrivateKey,
    database_dsn: str,
    rel_policy_target: str,
    dev_secrets: Secrets,
) -> AsyncIterator[actions_pb2_grpc.ActionServiceStub]:
    """An action service with HS256 + a JWKS (RS256) and a required audience."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    async with (
        running_action_server(
            database_dsn,
            rel_policy_target,
            dev_secrets,
            jwt_jwks_file=Path(jwks),
            jwt_audience=AUDIENCE,
        ) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        yield actions_pb2_grpc.ActionServiceStub(channel)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hmac_token(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    signing_input = _b64(header) + "." + _b64(claims)
    digest = hmac.new(key, signing_input.encode(), "sha256").digest()
    return signing_input + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def forged_tokens(secrets: Secrets, key: rsa.RSAPrivateKey) -> dict[str, str]:
    """Every forgery, each otherwise a perfectly good token for alice (an admin)."""
    now = int(time.time())
    good = {"sub": "alice", "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hs = secrets.jwt_secret

    def hs256(claims: dict[str, Any], secret: str | bytes = hs, **headers: Any) -> str:
        return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)

    return {
        "alg_none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(good) + ".",
        "alg_none_with_kid": _b64({"alg": "none", "kid": KID}) + "." + _b64(good) + ".",
        # HS/RS confusion: HMAC keyed with the published RSA public key.
        "hs256_keyed_with_rsa_public_key": _hmac_token(
            {"alg": "HS256", "kid": KID}, good, public_pem
        ),
        "rs256_attacker_key_same_kid": jwt.encode(
            good, attacker, algorithm="RS256", headers={"kid": KID}
        ),
        "rs256_unknown_kid": jwt.encode(good, key, algorithm="RS256", headers={"kid": "other"}),
        "hs512": jwt.encode(good, hs, algorithm="HS512"),
        "wrong_hs_key": hs256(good, "not-the-secret-" * 3),
        "service_secret_as_user_key": hs256(good, secrets.service_jwt_secret),
        "expired": hs256({**good, "exp": now - 120}),
        "rs256_expired": jwt.encode(
            {**good, "exp": now - 120}, key, algorithm="RS256", headers={"kid": KID}
        ),
        "not_yet_valid": hs256({**good, "nbf": now + 3600}),
        "wrong_audience": hs256({**good, "aud": "fleetward-policy"}),
        "no_audience": hs256({k: v for k, v in good.items() if k != "aud"}),
        "rs256_wrong_audience": jwt.encode(
            {**good, "aud": "someone-else"}, key, algorithm="RS256", headers={"kid": KID}
        ),
        "no_expiry": hs256({k: v for k, v in good.items() if k != "exp"}),
        "service_subject": hs256({**good, "sub": "svc:actions"}),
        "system_subject": hs256({**good, "sub": "system:scheduler"}),
        # Look-alikes of reserved subjects (NFKC and case folding recognise them).
        "lookalike_upper_service": hs256({**good, "sub": "SVC:actions"}),
        "lookalike_fullwidth_colon": hs256({**good, "sub": "system\uff1ascheduler"}),
        "lookalike_fullwidth_letters": hs256({**good, "sub": "\uff53\uff56\uff43:actions"}),
        "lookalike_padded": hs256({**good, "sub": " alice"}),
        "too_long_lived": hs256({**good, "exp": now + 25 * 3600}),
        "tampered_payload": hs256(good).rsplit(".", 2)[0]
        + "."
        + _b64({**good, "sub": "root"})
        + "."
        + hs256(good).rsplit(".", 1)[1],
    }


def calls(ws: str, action_id: str) -> dict[str, Callable[..., Any]]:
    """One well-formed request per RPC (so only the token can be wrong)."""
    return {
        "Execute": lambda s: s.Execute(execute_request(ws, "pause_agent", target="eng-code-1")),
        "Rollback": lambda s: s.Rollback(
            actions_pb2.RollbackRequest(
                workspace_id=ws, action_id=action_id, reason="undo it", request_id="r-1"
            )
        ),
        "GetAction": lambda s: s.GetAction(
            actions_pb2.GetActionRequest(workspace_id=ws, action_id=action_id)
        ),
        "ListActions": lambda s: s.ListActions(actions_pb2.ListActionsRequest(workspace_id=ws)),
        "ListActionEvents": lambda s: s.ListActionEvents(
            actions_pb2.ListActionEventsRequest(workspace_id=ws, action_id=action_id)
        ),
        "ListActionTypes": lambda s: s.ListActionTypes(actions_pb2.ListActionTypesRequest()),
        "GetAgent": lambda s: s.GetAgent(
            actions_pb2.GetAgentRequest(workspace_id=ws, agent_id="eng-code-1")
        ),
        "ListAgents": lambda s: s.ListAgents(actions_pb2.ListAgentsRequest(workspace_id=ws)),
        "WatchActions": lambda s: s.WatchActions(actions_pb2.WatchActionsRequest(workspace_id=ws)),
    }


async def invoke(stub: Any, rpc: str, make: Callable[..., Any], token: str) -> grpc.StatusCode:
    """Call as ``token``; the status code (watch streams are read to their first message)."""

    class Bound:
        def __getattr__(self, name: str) -> Any:
            method = getattr(stub, name)
            return lambda req: method(
                req, metadata=(("authorization", f"Bearer {token}"),), timeout=5
            )

    try:
        call = make(Bound())
        if rpc == "WatchActions":
            async for _ in call:
                break
            call.cancel()
            return C.OK
        await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() == C.UNAUTHENTICATED:
            info = details(exc)
            assert (info.reason, info.domain, info.error_infos) == (
                "UNAUTHENTICATED",
                "fleetward",
                1,
            )
        return exc.code()
    return C.OK


async def test_good_tokens_of_both_kinds_are_accepted(
    strict_stub: actions_pb2_grpc.ActionServiceStub,
    dev_secrets: Secrets,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    now = int(time.time())
    claims = {"sub": "alice", "aud": AUDIENCE, "exp": now + 600}
    for token in (
        jwt.encode(claims, dev_secrets.jwt_secret, algorithm="HS256"),
        jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": KID}),
    ):
        make = calls(str(uuid.uuid4()), str(uuid.uuid4()))["ListActionTypes"]
        assert await invoke(strict_stub, "ListActionTypes", make, token) == C.OK


async def test_every_forged_token_is_unauthenticated_on_every_rpc_and_writes_nothing(
    strict_stub: actions_pb2_grpc.ActionServiceStub,
    dev_secrets: Secrets,
    rsa_key: rsa.RSAPrivateKey,
    pool: asyncpg.Pool,
) -> None:
    ws = await create_workspace(pool)
    before = await writes(pool, [ws])
    audit_rows = await pool.fetchval("SELECT count(*) FROM action_audit_log")
    wrong: list[str] = []
    for name, token in forged_tokens(dev_secrets, rsa_key).items():
        for rpc, make in calls(str(ws), str(uuid.uuid4())).items():
            code = await invoke(strict_stub, rpc, make, token)
            counters.record("requests")
            if code != C.UNAUTHENTICATED:
                wrong.append(f"{name} on {rpc}: {code.name}")
            elif name.startswith("lookalike"):
                counters.record("lookalikes")
    assert not wrong, wrong
    assert await writes(pool, [ws]) == before
    assert await pool.fetchval("SELECT count(*) FROM action_audit_log") == audit_rows
