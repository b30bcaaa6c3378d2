"""``services.common.tokens``: the user and service token checks of docs/architecture.md §8."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from services.common.status import ServiceError
from services.common.token_claims import SERVICE_AUDIENCE
from services.common.tokens import (
    ServiceTokenVerifier,
    UserTokenVerifier,
    bearer_token,
    mint_service_token,
    mint_user_token,
)

SECRET = "user-secret-" + "x" * 32
SERVICE_SECRET = "service-secret-" + "y" * 32


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "bob", "iat": now, "nbf": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_raw_key(claims: dict[str, Any], key: bytes, kid: str | None = None) -> str:
    """HS256 signed by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""
    header: dict[str, str] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token: no signature at all."""
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _rejected(verifier: UserTokenVerifier | ServiceTokenVerifier, token: str) -> ServiceError:
    with pytest.raises(ServiceError) as refused:
        verifier.verify(token)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.reason == "UNAUTHENTICATED"
    return refused.value


class Jwks:
    """An RSA and an EC key published in a JWKS file."""

    def __init__(self, directory: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = []
        for kid, alg, public in (
            ("rsa-1", "RS256", RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)),
            ("ec-1", "ES256", ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)),
        ):
            keys.append({**public, "kid": kid, "alg": alg, "use": "sig"})
        self.path = directory / "jwks.json"
        self.path.write_text(json.dumps({"keys": keys}))

    @property
    def rsa_public_pem(self) -> bytes:
        """The RSA public key as an attacker would find it published."""
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def rs256(self, claims: dict[str, Any], kid: str = "rsa-1") -> str:
        """A token signed with the RSA key."""
        return jwt.encode(claims, self.rsa, algorithm="RS256", headers={"kid": kid})

    def es256(self, claims: dict[str, Any], kid: str = "ec-1") -> str:
        """A token signed with the EC key."""
        return jwt.encode(claims, self.ec, algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def jwks(tmp_path: Path) -> Jwks:
    """Fresh keys and their JWKS file."""
    return Jwks(tmp_path)


# --- user tokens -------------------------------------------------------------------------


def test_a_valid_hs256_user_token_is_accepted() -> None:
    principal = UserTokenVerifier(secret=SECRET).verify(mint_user_token(SECRET, "bob"))

    assert principal.subject == "bob"


def test_an_expired_user_token_is_rejected() -> None:
    error = _rejected(UserTokenVerifier(secret=SECRET), mint_user_token(SECRET, "bob", ttl_s=-60))
    assert "expired" in error.message


def test_a_user_token_signed_with_another_key_is_rejected() -> None:
    _rejected(UserTokenVerifier(secret=SECRET), mint_user_token("another-" + SECRET, "bob"))


def test_a_user_token_signed_with_the_service_secret_is_rejected() -> None:
    token = mint_user_token(SERVICE_SECRET, "bob")
    _rejected(UserTokenVerifier(secret=SECRET), token)


def test_an_unsigned_alg_none_token_is_rejected() -> None:
    token = _unsigned(_claims())

    error = _rejected(UserTokenVerifier(secret=SECRET), token)
    assert "algorithm none is not accepted" in error.message


def test_a_token_that_is_not_yet_valid_is_rejected() -> None:
    token = jwt.encode(_claims(nbf=int(time.time()) + 3600), SECRET, algorithm="HS256")

    _rejected(UserTokenVerifier(secret=SECRET), token)


def test_a_token_without_exp_is_rejected() -> None:
    token = jwt.encode(_claims(exp=None), SECRET, algorithm="HS256")

    error = _rejected(UserTokenVerifier(secret=SECRET), token)
    assert "exp" in error.message


def test_a_token_without_subject_is_rejected() -> None:
    token = jwt.encode(_claims(sub=None), SECRET, algorithm="HS256")

    _rejected(UserTokenVerifier(secret=SECRET), token)


def test_a_token_for_another_audience_is_rejected() -> None:
    verifier = UserTokenVerifier(secret=SECRET, audience="fleetward")

    _rejected(verifier, mint_user_token(SECRET, "bob", audience="someone-else"))


def test_a_token_without_audience_is_rejected_when_one_is_configured() -> None:
    verifier = UserTokenVerifier(secret=SECRET, audience="fleetward")

    _rejected(verifier, mint_user_token(SECRET, "bob"))


def test_a_token_with_the_configured_audience_is_accepted() -> None:
    verifier = UserTokenVerifier(secret=SECRET, audience="fleetward")

    assert verifier.verify(mint_user_token(SECRET, "bob", audience="fleetward")).subject == "bob"


@pytest.mark.parametrize(
    "subject",
    [
        "svc:actions",
        "svc:debug",
        "system:scheduler",
        # Look-alikes: recognised after NFKC normalisation and case folding.
        "SVC:actions",
        "System:Scheduler",
        "system\uff1ascheduler",  # a full-width colon
        "\uff53\uff56\uff43:actions",  # full-width letters
        "svc\ufe55actions",  # a small colon
        # Confusables (Unicode TR39), which NFKC leaves alone: they used to pass.
        "\u0455vc:actions",  # Cyrillic dze
        "s\u0443stem:scheduler",  # Cyrillic u
        "svc\ua789actions",  # modifier letter colon
        "svc\u2236actions",  # ratio
        "systern:scheduler",  # rn for m
        "\u0455\u0475\u0441:x",  # three Cyrillic letters
    ],
)
def test_a_user_token_with_a_reserved_subject_is_rejected(subject: str) -> None:
    error = _rejected(UserTokenVerifier(secret=SECRET), mint_user_token(SECRET, subject))
    assert "reserved subject" in error.message


@pytest.mark.parametrize(
    "subject",
    [
        "bob",
        "alice@example.com",
        "\u0438\u0432\u0430\u043d",
        "svcx",
        "system",
        "sys:x",
        "service:x",
    ],
)
def test_ordinary_subjects_are_not_reserved(subject: str) -> None:
    assert (
        UserTokenVerifier(secret=SECRET).verify(mint_user_token(SECRET, subject)).subject == subject
    )


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "e30.e30.", "Bearer x"])
def test_garbage_is_rejected(garbage: str) -> None:
    _rejected(UserTokenVerifier(secret=SECRET), garbage)


def test_a_service_token_is_not_a_user_token() -> None:
    # Even with one secret for both (a misconfiguration), svc: never passes as a user.
    _rejected(UserTokenVerifier(secret=SECRET), mint_service_token(SECRET, "actions"))


# --- JWKS (RS256 / ES256) ----------------------------------------------------------------


def test_an_rs256_token_from_the_jwks_is_accepted(jwks: Jwks) -> None:
    verifier = UserTokenVerifier(secret=None, jwks_file=jwks.path)

    assert verifier.verify(jwks.rs256(_claims())).subject == "bob"


def test_an_es256_token_from_the_jwks_is_accepted(jwks: Jwks) -> None:
    verifier = UserTokenVerifier(secret=None, jwks_file=jwks.path)

    assert verifier.verify(jwks.es256(_claims(sub="carol"))).subject == "carol"


def test_hs256_signed_with_the_jwks_public_key_is_rejected(jwks: Jwks) -> None:
    forged = _hs256_with_raw_key(_claims(), jwks.rsa_public_pem, kid="rsa-1")

    _rejected(UserTokenVerifier(secret=None, jwks_file=jwks.path), forged)


def test_hs256_signed_with_the_public_key_is_rejected_when_a_secret_is_also_set(
    jwks: Jwks,
) -> None:
    forged = _hs256_with_raw_key(_claims(), jwks.rsa_public_pem, kid="rsa-1")

    _rejected(UserTokenVerifier(secret=SECRET, jwks_file=jwks.path), forged)


def test_hs256_with_the_jwk_json_as_secret_is_rejected(jwks: Jwks) -> None:
    public_jwk = json.loads(jwks.path.read_text())["keys"][0]
    forged = _hs256_with_raw_key(_claims(), json.dumps(public_jwk).encode(), kid="rsa-1")

    _rejected(UserTokenVerifier(secret=None, jwks_file=jwks.path), forged)


def test_a_token_with_an_unknown_kid_is_rejected(jwks: Jwks) -> None:
    error = _rejected(
        UserTokenVerifier(secret=None, jwks_file=jwks.path), jwks.rs256(_claims(), kid="rsa-9")
    )
    assert "unknown key id" in error.message


def test_a_token_without_kid_is_rejected_by_a_jwks_verifier(jwks: Jwks) -> None:
    token = jwt.encode(_claims(), jwks.rsa, algorithm="RS256")

    _rejected(UserTokenVerifier(secret=None, jwks_file=jwks.path), token)


def test_a_token_signed_by_a_foreign_key_with_a_known_kid_is_rejected(jwks: Jwks) -> None:
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), foreign, algorithm="RS256", headers={"kid": "rsa-1"})

    _rejected(UserTokenVerifier(secret=None, jwks_file=jwks.path), token)


def test_an_es256_header_on_an_rsa_kid_is_rejected(jwks: Jwks) -> None:
    token = jwt.encode(_claims(), jwks.ec, algorithm="ES256", headers={"kid": "rsa-1"})

    _rejected(UserTokenVerifier(secret=None, jwks_file=jwks.path), token)


def test_an_expired_rs256_token_is_rejected(jwks: Jwks) -> None:
    token = jwks.rs256(_claims(exp=int(time.time()) - 60))

    _rejected(UserTokenVerifier(secret=None, jwks_file=jwks.path), token)


def test_an_hs256_token_is_rejected_by_a_jwks_only_verifier(jwks: Jwks) -> None:
    error = _rejected(
        UserTokenVerifier(secret=None, jwks_file=jwks.path), mint_user_token(SECRET, "bob")
    )
    assert "algorithm HS256 is not accepted" in error.message


def test_a_verifier_needs_a_secret_or_a_jwks_file() -> None:
    with pytest.raises(ValueError, match="FLEETWARD_JWT_SECRET"):
        UserTokenVerifier(secret=None)


# --- service tokens ----------------------------------------------------------------------


def test_a_service_token_is_accepted_by_the_service_verifier() -> None:
    verifier = ServiceTokenVerifier(secret=SERVICE_SECRET)

    assert verifier.verify(mint_service_token(SERVICE_SECRET, "actions")).subject == "svc:actions"


def test_a_service_token_signed_with_the_user_secret_is_rejected() -> None:
    _rejected(ServiceTokenVerifier(secret=SERVICE_SECRET), mint_service_token(SECRET, "actions"))


def test_a_user_token_is_not_a_service_token() -> None:
    # Signed with the service secret but without the service audience.
    _rejected(ServiceTokenVerifier(secret=SERVICE_SECRET), mint_user_token(SERVICE_SECRET, "bob"))


def test_a_service_audience_token_without_svc_subject_is_rejected() -> None:
    token = jwt.encode(_claims(aud=SERVICE_AUDIENCE), SERVICE_SECRET, algorithm="HS256")

    error = _rejected(ServiceTokenVerifier(secret=SERVICE_SECRET), token)
    assert "svc:<name>" in error.message


def test_an_expired_service_token_is_rejected() -> None:
    token = mint_service_token(SERVICE_SECRET, "actions", ttl_s=-60)

    _rejected(ServiceTokenVerifier(secret=SERVICE_SECRET), token)


def test_an_alg_none_service_token_is_rejected() -> None:
    token = _unsigned(_claims(sub="svc:actions", aud=SERVICE_AUDIENCE))

    _rejected(ServiceTokenVerifier(secret=SERVICE_SECRET), token)


def test_mint_service_token_adds_the_prefix_once() -> None:
    verifier = ServiceTokenVerifier(secret=SERVICE_SECRET)

    assert verifier.verify(mint_service_token(SERVICE_SECRET, "svc:debug")).subject == "svc:debug"


# --- bearer_token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer abc.def.ghi"),), "abc.def.ghi"),
        ((("authorization", "bearer abc"),), "abc"),
        ((("authorization", "BEARER abc"),), "abc"),
        ((("Authorization", "Bearer abc"),), "abc"),
        ((("authorization", b"Bearer abc"),), "abc"),
        ((("authorization", "  Bearer abc  "),), "abc"),
        ((("x-request-id", "1"), ("authorization", "Bearer abc")), "abc"),
    ],
)
def test_bearer_token_is_read_from_the_authorization_header(
    metadata: tuple[tuple[str, str | bytes], ...], token: str
) -> None:
    assert bearer_token(metadata) == token


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (),
        (("x-request-id", "1"),),
        (("authorization", ""),),
        (("authorization", "Bearer"),),
        (("authorization", "Bearer    "),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "abc.def.ghi"),),
        (("authorization", "Token abc"),),
    ],
)
def test_bearer_token_refuses_a_missing_or_malformed_header(metadata: Any) -> None:
    with pytest.raises(ServiceError) as refused:
        bearer_token(metadata)

    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.reason == "UNAUTHENTICATED"


# --- lifetime, issuer, algorithm pinned by the key ----------------------------------------


def test_a_token_living_longer_than_the_maximum_is_rejected() -> None:
    verifier = UserTokenVerifier(secret=SECRET, max_ttl_s=24 * 3600)
    now = int(time.time())
    long_lived = jwt.encode(_claims(iat=now, exp=now + 25 * 3600), SECRET, algorithm="HS256")
    error = _rejected(verifier, long_lived)
    assert "longer than" in error.message
    no_iat = jwt.encode(_claims(iat=None, exp=now + 30 * 3600), SECRET, algorithm="HS256")
    _rejected(verifier, no_iat)
    fine = jwt.encode(_claims(iat=now, exp=now + 23 * 3600), SECRET, algorithm="HS256")
    assert verifier.verify(fine).subject == "bob"


def test_dates_must_be_numbers_or_the_lifetime_check_is_skipped() -> None:
    """PyJWT takes ``"exp": "2111564956"`` (it calls int()); a string date used to pass
    the longest-lifetime check, and a watch stream on it never ended."""
    verifier = UserTokenVerifier(secret=SECRET, max_ttl_s=3600)
    now = int(time.time())
    for claims in (
        _claims(iat=now, exp=str(now + 10 * 365 * 86400)),
        _claims(iat=str(now), exp=now + 60),
        _claims(iat=now, exp=now + 60, nbf=str(now - 1)),
        _claims(iat=now, exp=True),
    ):
        _rejected(verifier, jwt.encode(claims, SECRET, algorithm="HS256"))
    # An iat in the future buys no extra lifetime.
    future_iat = _claims(iat=now + 10 * 86400, exp=now + 10 * 86400 + 60)
    _rejected(verifier, jwt.encode(future_iat, SECRET, algorithm="HS256"))
    service = ServiceTokenVerifier(secret=SERVICE_SECRET)
    stringly = {"sub": "svc:actions", "aud": SERVICE_AUDIENCE, "exp": str(now + 60)}
    _rejected(service, jwt.encode(stringly, SERVICE_SECRET, algorithm="HS256"))


def test_the_issuer_is_checked_when_configured() -> None:
    verifier = UserTokenVerifier(secret=SECRET, issuer="https://idp.example")
    good = jwt.encode(_claims(iss="https://idp.example"), SECRET, algorithm="HS256")
    assert verifier.verify(good).subject == "bob"
    _rejected(verifier, jwt.encode(_claims(iss="https://evil.example"), SECRET, algorithm="HS256"))
    _rejected(verifier, jwt.encode(_claims(), SECRET, algorithm="HS256"))  # no iss at all


def test_the_algorithm_is_the_keys_not_the_headers(jwks: Jwks) -> None:
    # kid ec-1 is an ES256 key: a header claiming RS256 for it is refused outright.
    token = jwt.encode(_claims(), jwks.rsa, algorithm="RS256", headers={"kid": "ec-1"})
    _rejected(UserTokenVerifier(secret=None, jwks_file=jwks.path), token)


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 1100 + b"]" * 1100,
        b'{"a":' * 1100 + b"1" + b"}" * 1100,
        b'{"alg":"HS256","x":' + b"9" * 5000 + b"}",
        b'{"alg":{"x":"' + b"A" * 300 + b'"}}',
        b"\xff\xfe",
    ],
)
def test_a_hostile_token_learns_nothing_about_the_interpreter(header: bytes) -> None:
    """PyJWT's messages used to be relayed: "maximum recursion depth exceeded…",
    "Exceeds the limit (4300 digits)… sys.set_int_max_str_digits()", or the token's own
    text echoed back."""
    token = f"{_segment(header)}.{_segment(b'{}')}.c2ln"
    for verifier in (
        UserTokenVerifier(secret=SECRET),
        ServiceTokenVerifier(secret=SERVICE_SECRET),
    ):
        message = _rejected(verifier, token).message
        for leak in ("recursion", "digits", "sys.", "AAAA", "Expecting", "utf-8", "codec"):
            assert leak not in message, message
        assert len(message) < 80, message
