"""A token's claims in our words (docs/architecture.md §8): what its unverified claims
say it is (only to word a refusal), what was wrong with it, and the claims that must be
numbers.

A token that no key verifies and whose unverified claims look like the other kind is
refused with a hint that says which kind the service takes and how to make one
(``apparent_kind`` only words the refusal; a token is accepted only by its verifier).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import jwt

from services.common.status import ServiceError, unauthenticated
from services.common.subjects import SERVICE_PREFIX

SERVICE_AUDIENCE = "fleetward-policy"

TokenKind = Literal["user", "service"]


def unverified_claims(token: str) -> dict[str, Any] | None:
    """A token's claims read WITHOUT checking its signature, or None when they cannot be
    read: only to word a message or label a page, never to allow anything.
    """
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # whatever a hostile token provokes, it just has no readable claims
        return None
    return claims


def apparent_kind(token: str) -> TokenKind | None:
    """What a token's unverified claims say it is, only to word its refusal
    (docs/architecture.md §8).

    ``service`` when the audience is ``fleetward-policy`` or the subject starts with
    ``svc:``; ``user`` for any other subject; None when the token has no readable claims.
    Nothing here is trusted: a token is accepted only by its verifier, whatever this says.
    """
    claims = unverified_claims(token)
    if claims is None:
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    subject = claims.get("sub")
    if SERVICE_AUDIENCE in audiences or (
        isinstance(subject, str) and subject.startswith(SERVICE_PREFIX)
    ):
        return "service"
    return "user" if isinstance(subject, str) and subject else None


def wrong_kind_refusal(
    message: str, token: str, other: TokenKind, hint: str | None
) -> ServiceError:
    """UNAUTHENTICATED for a token whose key did not verify it: ``hint`` (which says what
    this service takes and how to make one) when the token looks like the ``other`` kind,
    else ``message``.
    """
    if hint is not None and apparent_kind(token) == other:
        return unauthenticated(hint)
    return unauthenticated(message)


def token_problem(exc: jwt.PyJWTError) -> str:
    """What was wrong with a token, in our words: PyJWT's own messages can carry the
    token's text back, or Python's (``Exceeds the limit (4300 digits)…``), which names
    the interpreter and library to whoever sent it.
    """
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the {exc.claim!r} claim is required"  # one of the names we require
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not valid yet"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "algorithm not accepted"
    if isinstance(exc, jwt.DecodeError):
        return "not a well-formed JWT"
    return "rejected"


def require_numeric_dates(claims: Mapping[str, Any]) -> None:
    """UNAUTHENTICATED unless ``exp``, ``iat`` and ``nbf`` (when present) are JSON numbers.

    PyJWT also accepts a string such as ``"2111564956"`` (it calls ``int()``); RFC 7519
    says NumericDate is a number, and every later check here (the longest lifetime, a
    stream ending when its token expires) reads the number.
    """
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise unauthenticated(f"token claim {name!r} must be a number of seconds")
