"""The wrong kind of token is refused with a hint (docs/architecture.md §8).

``apparent_kind`` reads a token's unverified claims only to word the refusal: the
verification itself, and so what is accepted, is unchanged.
"""

from __future__ import annotations

import base64
from pathlib import Path

import jwt
import pytest

from services.common.token_claims import SERVICE_AUDIENCE, apparent_kind
from services.common.tokens import (
    ServiceTokenVerifier,
    UserTokenVerifier,
    mint_service_token,
    mint_user_token,
)
from tests.foundation.test_tokens import (
    SECRET,
    SERVICE_SECRET,
    Jwks,
    _claims,
    _rejected,
    _unsigned,
)

USER_HINT = "send a user token"  # what the action service would say
SERVICE_HINT = "send a service token"  # what the policy service would say


def _user_verifier() -> UserTokenVerifier:
    return UserTokenVerifier(secret=SECRET, wrong_kind_hint=USER_HINT)


def _service_verifier() -> ServiceTokenVerifier:
    return ServiceTokenVerifier(secret=SERVICE_SECRET, wrong_kind_hint=SERVICE_HINT)


@pytest.mark.parametrize(
    ("claims", "kind"),
    [
        (_claims(sub="svc:actions", aud=SERVICE_AUDIENCE), "service"),
        (_claims(sub="svc:debug"), "service"),
        (_claims(sub="bob", aud=SERVICE_AUDIENCE), "service"),
        (_claims(sub="bob", aud=["fleetward", SERVICE_AUDIENCE]), "service"),
        (_claims(sub="bob"), "user"),
        (_claims(sub="bob", aud="fleetward"), "user"),
        (_claims(sub=None), None),
        (_claims(sub=""), None),
        (_claims(sub=42), None),
    ],
)
def test_the_apparent_kind_comes_from_the_claims_whatever_signed_them(
    claims: dict[str, object], kind: str | None
) -> None:
    for token in (
        jwt.encode(claims, SECRET, algorithm="HS256"),
        jwt.encode(claims, "another-" + SERVICE_SECRET, algorithm="HS256"),
        _unsigned(claims),
    ):
        assert apparent_kind(token) == kind


@pytest.mark.parametrize(
    "token", ["", "not-a-jwt", "a.b.c", "e30.e30.", "e30.W10.c2ln", "e30." + "W" * 40 + ".c2ln"]
)
def test_garbage_has_no_apparent_kind(token: str) -> None:
    assert apparent_kind(token) is None


def test_a_hostile_payload_has_no_apparent_kind() -> None:
    nested = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).rstrip(b"=").decode()
    assert apparent_kind(f"e30.{nested}.c2ln") is None


# --- the action service (user tokens) ------------------------------------------------------


def test_a_service_token_sent_as_a_user_token_gets_the_hint() -> None:
    error = _rejected(_user_verifier(), mint_service_token(SERVICE_SECRET, "actions"))
    assert error.message == USER_HINT


def test_service_claims_under_any_other_key_get_the_hint() -> None:
    forged = jwt.encode(_claims(sub="bob", aud=SERVICE_AUDIENCE), "x" * 40, algorithm="HS256")
    assert _rejected(_user_verifier(), forged).message == USER_HINT


def test_a_jwks_only_verifier_gives_the_hint_for_a_service_token(tmp_path: Path) -> None:
    verifier = UserTokenVerifier(
        secret=None, jwks_file=Jwks(tmp_path).path, wrong_kind_hint=USER_HINT
    )
    error = _rejected(verifier, mint_service_token(SERVICE_SECRET, "actions"))
    assert error.message == USER_HINT


def test_a_user_token_under_a_wrong_key_keeps_the_plain_refusal() -> None:
    error = _rejected(_user_verifier(), mint_user_token(SERVICE_SECRET, "bob"))
    assert error.message == "invalid token: bad signature"


def test_a_verified_token_with_a_service_subject_keeps_its_own_refusal() -> None:
    # Signed with the user key: the key is right, the subject is what is wrong.
    error = _rejected(_user_verifier(), mint_user_token(SECRET, "svc:actions"))
    assert "reserved subject" in error.message


def test_an_expired_user_token_keeps_its_own_refusal() -> None:
    error = _rejected(_user_verifier(), mint_user_token(SECRET, "bob", ttl_s=-60))
    assert error.message == "token expired"


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "e30.e30."])
def test_garbage_keeps_the_plain_refusal_of_user_tokens(garbage: str) -> None:
    plain = _rejected(UserTokenVerifier(secret=SECRET), garbage).message
    assert _rejected(_user_verifier(), garbage).message == plain
    assert USER_HINT not in plain


def test_without_a_hint_a_service_token_gets_the_plain_refusal() -> None:
    error = _rejected(UserTokenVerifier(secret=SECRET), mint_service_token(SERVICE_SECRET, "x"))
    assert error.message == "invalid token: bad signature"


# --- the policy service (service tokens) ---------------------------------------------------


def test_a_user_token_sent_as_a_service_token_gets_the_hint() -> None:
    error = _rejected(_service_verifier(), mint_user_token(SECRET, "bob"))
    assert error.message == SERVICE_HINT


def test_an_rs256_user_token_sent_as_a_service_token_gets_the_hint(tmp_path: Path) -> None:
    token = Jwks(tmp_path).rs256(_claims())
    assert _rejected(_service_verifier(), token).message == SERVICE_HINT


def test_service_claims_under_the_user_key_keep_the_plain_refusal() -> None:
    error = _rejected(_service_verifier(), mint_service_token(SECRET, "actions"))
    assert error.message == "invalid service token: bad signature"


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "e30.e30."])
def test_garbage_keeps_the_plain_refusal_of_service_tokens(garbage: str) -> None:
    plain = _rejected(ServiceTokenVerifier(secret=SERVICE_SECRET), garbage).message
    assert _rejected(_service_verifier(), garbage).message == plain
    assert SERVICE_HINT not in plain


def test_with_a_hint_set_the_right_kind_still_verifies() -> None:
    user = _user_verifier().verify(mint_user_token(SECRET, "bob"))
    service = _service_verifier().verify(mint_service_token(SERVICE_SECRET, "actions"))
    assert (user.subject, service.subject) == ("bob", "svc:actions")
