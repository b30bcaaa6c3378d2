"""The wrong kind of token is told what to send, on both real services
(docs/architecture.md §8).

A user token at the policy service and a service token at the action service used to
fail with a bare "bad signature". The refusal now names the kind of token the service
takes and the dev command that makes one; it is still UNAUTHENTICATED with reason
UNAUTHENTICATED, and a token that is merely broken keeps its generic message.
"""

from __future__ import annotations

import grpc
import pytest
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.dev.token import token_for
from tests.actions.helpers import details
from tests.conftest import Secrets

POLICY_HINT = (
    "this is the policy service: it takes service tokens (subject svc:NAME, signed with "
    "FLEETWARD_SERVICE_JWT_SECRET); this looks like a user token. Dev: make token SUB=svc:debug"
)
ACTION_HINT = (
    "this is the action service: it takes user tokens (a person's subject, signed with "
    "FLEETWARD_JWT_SECRET or a key of FLEETWARD_JWT_JWKS_FILE); this looks like a service "
    "token. Dev: make token SUB=bob"
)


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _policy_refusal(target: str, token: str) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetPolicyInfo(policy_pb2.GetPolicyInfoRequest(), metadata=_md(token))
    info = details(caught.value)
    assert (info.code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    return caught.value.details() or ""


async def _action_refusal(channel: grpc.aio.Channel, token: str) -> str:
    stub = actions_pb2_grpc.ActionServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListActionTypes(actions_pb2.ListActionTypesRequest(), metadata=_md(token))
    info = details(caught.value)
    assert (info.code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    return caught.value.details() or ""


@pytest.fixture
def dev_env(monkeypatch: pytest.MonkeyPatch, dev_secrets: Secrets) -> None:
    """``make token`` signs with this session's secrets (as ``make run`` sets them)."""
    monkeypatch.setenv("FLEETWARD_JWT_SECRET", dev_secrets.jwt_secret)
    monkeypatch.setenv("FLEETWARD_SERVICE_JWT_SECRET", dev_secrets.service_jwt_secret)
    for unset in ("FLEETWARD_JWT_AUDIENCE", "FLEETWARD_JWT_ISSUER", "FLEETWARD_JWT_JWKS_FILE"):
        monkeypatch.delenv(unset, raising=False)


async def test_a_user_token_at_the_policy_service_is_told_to_send_a_service_token(
    rel_policy_target: str, dev_secrets: Secrets
) -> None:
    assert await _policy_refusal(rel_policy_target, dev_secrets.user_token("bob")) == POLICY_HINT


async def test_a_service_token_at_the_action_service_is_told_to_send_a_user_token(
    rel_channel: grpc.aio.Channel, dev_secrets: Secrets
) -> None:
    for token in (dev_secrets.service_token("actions"), dev_secrets.service_token("debug")):
        assert await _action_refusal(rel_channel, token) == ACTION_HINT


@pytest.mark.usefixtures("dev_env")
async def test_the_commands_the_hints_name_make_tokens_the_services_take(
    rel_policy_target: str, rel_channel: grpc.aio.Channel
) -> None:
    async with grpc.aio.insecure_channel(rel_policy_target) as channel:
        info = await policy_pb2_grpc.PolicyServiceStub(channel).GetPolicyInfo(
            policy_pb2.GetPolicyInfoRequest(), metadata=_md(token_for("svc:debug"))
        )
    assert info.policy_version
    types = await actions_pb2_grpc.ActionServiceStub(rel_channel).ListActionTypes(
        actions_pb2.ListActionTypesRequest(), metadata=_md(token_for("bob"))
    )
    assert types.action_types
    # And each is the other service's wrong kind.
    assert await _action_refusal(rel_channel, token_for("svc:debug")) == ACTION_HINT
    assert await _policy_refusal(rel_policy_target, token_for("bob")) == POLICY_HINT


@pytest.mark.parametrize(
    ("token", "policy_message", "action_message"),
    [
        (
            "not-a-jwt",
            "invalid service token: not a well-formed JWT",
            "invalid token: not a well-formed JWT",
        ),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.c2ln",  # HS256, {"sub": 1}: no kind to tell
            "invalid service token: bad signature",
            "invalid token: bad signature",
        ),
    ],
)
async def test_garbage_keeps_the_generic_refusal(
    rel_policy_target: str,
    rel_channel: grpc.aio.Channel,
    token: str,
    policy_message: str,
    action_message: str,
) -> None:
    assert await _policy_refusal(rel_policy_target, token) == policy_message
    assert await _action_refusal(rel_channel, token) == action_message


async def test_the_right_kind_under_a_wrong_key_keeps_the_generic_refusal(
    rel_policy_target: str, rel_channel: grpc.aio.Channel
) -> None:
    forged = Secrets()  # the right kinds of token, signed with secrets nobody configured
    policy = await _policy_refusal(rel_policy_target, forged.service_token("actions"))
    action = await _action_refusal(rel_channel, forged.user_token("bob"))
    assert (policy, action) == (
        "invalid service token: bad signature",
        "invalid token: bad signature",
    )
