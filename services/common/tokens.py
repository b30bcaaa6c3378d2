"""Minting and verifying the JWTs of docs/architecture.md §8.

User tokens: HS256 with ``FLEETWARD_JWT_SECRET``, or RS256/ES256 with keys from a JWKS
file (chosen by ``kid``). Service tokens (``sub = svc:<name>``, audience
``fleetward-policy``) are HS256 with the separate ``FLEETWARD_SERVICE_JWT_SECRET``, so the
user-token key can never mint a service identity. A token that no key verifies and whose
unverified claims look like the other kind is refused with a hint that says which kind the
service takes and how to make one (``apparent_kind`` only words the refusal).
"""

from __future__ import annotations

import functools
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from confusable_homoglyphs import confusables

from services.common.names import MAX_SUBJECT
from services.common.status import ServiceError, unauthenticated

SERVICE_AUDIENCE = "fleetward-policy"
SERVICE_PREFIX = "svc:"
RESERVED_PREFIXES = (SERVICE_PREFIX, "system:")
# A token may live at most this long (``FLEETWARD_JWT_MAX_TTL``): a leaked one expires soon.
DEFAULT_MAX_TTL_S = 24 * 3600


def is_reserved(subject: str) -> bool:
    """Whether ``subject`` names a service or a system actor, or looks as if it did.

    Compared after NFKC normalisation and case folding (``SVC:x``, a full-width colon),
    then character by character against Unicode's confusables (TR39): ``svc:actions``
    spelled with a Cyrillic dze for the ``s``, ``system:x`` with a modifier-letter colon
    (U+A789), or ``systern:x`` is reserved too. No user token can carry a subject that a
    person reading the audit log would take for one of ours.
    """
    folded = unicodedata.normalize("NFKC", subject).casefold()
    return any(_resembles(folded, 0, prefix) for prefix in RESERVED_PREFIXES)


def _resembles(text: str, at: int, prefix: str) -> bool:
    """Whether ``text[at:]`` starts with something that looks like ``prefix``."""
    if not prefix:
        return True
    return any(
        text.startswith(glyph, at) and _resembles(text, at + len(glyph), prefix[1:])
        for glyph in _look_alikes(prefix[0])
    )


@functools.cache
def _look_alikes(char: str) -> tuple[str, ...]:
    """``char`` and everything Unicode lists as confusable with it, normalised like a
    subject (some are two characters: ``rn`` for ``m``).
    """
    glyphs = {char}
    for key in {char, char.upper()}:
        for entry in confusables.confusables_data.get(key, ()):
            glyph = entry["c"].strip("\u200e\u200f")  # direction marks around RTL glyphs
            glyphs.add(unicodedata.normalize("NFKC", glyph).casefold())
    return tuple(sorted(glyphs - {""}))


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be a policy subject, or None.

    One rule for both services: the action service refuses such a token as
    UNAUTHENTICATED, so the policy service (which refuses it as INVALID_ARGUMENT) never
    sees one, and the audit log never stores a subject that prints as another.
    """
    if not subject:
        return "required"
    if len(subject) > MAX_SUBJECT:
        return f"at most {MAX_SUBJECT} characters"
    if subject != subject.strip() or not subject.isprintable():
        return "must be printable, without control characters or surrounding whitespace"
    return None


_ASYMMETRIC = ["RS256", "ES256"]

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
    """What a token's unverified claims say it is, only to word its refusal (§8).

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


def _refusal(message: str, token: str, other: TokenKind, hint: str | None) -> ServiceError:
    """UNAUTHENTICATED for a token whose key did not verify it: ``hint`` (which says what
    this service takes and how to make one) when the token looks like the ``other`` kind,
    else ``message``.
    """
    if hint is not None and apparent_kind(token) == other:
        return unauthenticated(hint)
    return unauthenticated(message)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    claims: Mapping[str, Any]


def mint_user_token(
    secret: str,
    subject: str,
    *,
    audience: str | None = None,
    issuer: str | None = None,
    ttl_s: int = 12 * 3600,
) -> str:
    """Sign an HS256 user token (dev and tests; production tokens come from the IdP).

    Each carries a random ``jti``, so two minted in the same second are still two
    sessions (the console ends a signed-out session's pages by its token).
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": secrets.token_hex(16),
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def mint_service_token(secret: str, name: str, *, ttl_s: int = 300) -> str:
    """Sign a service token for ``svc:<name>`` (``name`` may already carry the prefix)."""
    subject = name if name.startswith(SERVICE_PREFIX) else SERVICE_PREFIX + name
    now = int(time.time())
    claims = {"sub": subject, "aud": SERVICE_AUDIENCE, "iat": now, "nbf": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer_token(metadata: Any) -> str:
    """Return the token of an ``authorization: Bearer …`` header or raise UNAUTHENTICATED."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthenticated("authorization header must be 'Bearer <JWT>'")
            return token.strip()
    raise unauthenticated("missing authorization header ('Bearer <JWT>')")


class UserTokenVerifier:
    """Verifies user tokens: HS256 with a secret and/or RS256/ES256 with a JWKS file.

    The algorithm comes from the key, never from the token's header alone: the secret
    verifies HS256 only, and a JWKS key (chosen by ``kid``) only its own algorithm.
    """

    def __init__(
        self,
        *,
        secret: str | None,
        jwks_file: Path | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        max_ttl_s: int = DEFAULT_MAX_TTL_S,
        wrong_kind_hint: str | None = None,
    ) -> None:
        """Create the verifier.

        Args:
            secret: The HS256 secret (``FLEETWARD_JWT_SECRET``), if any.
            jwks_file: A JWKS file of RS256/ES256 keys (``FLEETWARD_JWT_JWKS_FILE``), if any.
            audience: The required ``aud``, if any.
            issuer: The required ``iss``, if any.
            max_ttl_s: The longest lifetime a token may have.
            wrong_kind_hint: The refusal of a token that no key verifies and that looks
                like a service token (what to send instead); None keeps the plain one.

        Raises:
            ValueError: When neither a secret nor a JWKS file is given.
        """
        if not secret and jwks_file is None:
            raise ValueError("set FLEETWARD_JWT_SECRET or FLEETWARD_JWT_JWKS_FILE")
        self._secret = secret
        self._audience = audience
        self._issuer = issuer
        self._max_ttl_s = max_ttl_s
        self._hint = wrong_kind_hint
        self._keys: dict[str, jwt.PyJWK] = {}
        if jwks_file is not None:
            jwks = jwt.PyJWKSet.from_json(Path(jwks_file).read_text())
            self._keys = {k.key_id: k for k in jwks.keys if k.key_id}

    def verify(self, token: str) -> Principal:
        """Return the principal or raise UNAUTHENTICATED."""
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            options: jwt.types.Options = {
                "require": ["exp", "sub", *(["iss"] if self._issuer else [])],
                "verify_aud": self._audience is not None,
            }
            if alg == "HS256" and self._secret:
                key: Any = self._secret
                algorithms = ["HS256"]
            elif alg in _ASYMMETRIC and self._keys:
                kid = header.get("kid")
                if not isinstance(kid, str) or kid not in self._keys:
                    raise self._refused("token signed with an unknown key id", token)
                key = self._keys[kid]
                algorithms = [key.algorithm_name]  # the key's algorithm, whatever the header says
            else:
                plain = isinstance(alg, str) and alg.isascii() and alg.isalnum() and len(alg) <= 8
                shown = f" {alg}" if plain else ""
                raise self._refused(f"token algorithm{shown} is not accepted", token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options=options,
            )
        except ServiceError:
            raise
        except jwt.ExpiredSignatureError as exc:
            raise unauthenticated("token expired") from exc
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
            raise self._refused(f"invalid token: {token_problem(exc)}", token) from exc
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"invalid token: {token_problem(exc)}") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise unauthenticated("token has no subject")
        if is_reserved(subject):
            raise unauthenticated("user tokens may not carry a reserved subject (svc:, system:)")
        require_numeric_dates(claims)
        self._check_lifetime(claims)
        return Principal(subject=subject, claims=claims)

    def _refused(self, message: str, token: str) -> ServiceError:
        """No key of ours verified ``token``: the hint if it looks like a service token."""
        return _refusal(message, token, "service", self._hint)

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        """UNAUTHENTICATED for a token that lives longer than the maximum, counted from
        ``iat`` or from now, whichever is earlier (an ``iat`` in the future buys nothing).
        """
        exp, iat = claims["exp"], claims.get("iat")
        start = min(iat, time.time()) if iat is not None else time.time()
        if exp - start > self._max_ttl_s:
            raise unauthenticated(
                f"token lives longer than the {self._max_ttl_s} s this service accepts; "
                "ask the identity provider for a shorter-lived one"
            )


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


class ServiceTokenVerifier:
    """Verifies service tokens: HS256 with the service secret, ``aud`` fleetward-policy."""

    def __init__(self, *, secret: str, wrong_kind_hint: str | None = None) -> None:
        """Create the verifier.

        Args:
            secret: The service-token secret (``FLEETWARD_SERVICE_JWT_SECRET``).
            wrong_kind_hint: The refusal of a token the secret does not verify and that
                looks like a user token (what to send instead); None keeps the plain one.

        Raises:
            ValueError: When the secret is empty.
        """
        if not secret:
            raise ValueError("set FLEETWARD_SERVICE_JWT_SECRET")
        self._secret = secret
        self._hint = wrong_kind_hint

    def verify(self, token: str) -> Principal:
        """Return the service principal or raise UNAUTHENTICATED."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=SERVICE_AUDIENCE,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthenticated("service token expired") from exc
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
            message = f"invalid service token: {token_problem(exc)}"
            raise _refusal(message, token, "user", self._hint) from exc
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"invalid service token: {token_problem(exc)}") from exc
        require_numeric_dates(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.startswith(SERVICE_PREFIX):
            raise unauthenticated("service tokens must have subject svc:<name>")
        return Principal(subject=subject, claims=claims)


class VerifiedTokens:
    """Remembers verified tokens until their ``exp`` (bounded; cleared when full).

    Callers reuse one token for many calls, and checking a signature costs more than
    the rest of a policy Check. A token is remembered only after it verified, so a
    forged or expired token is checked (and refused) every time.
    """

    def __init__(self, verify: Callable[[str], Principal], *, size: int = 1024) -> None:
        self._verify = verify
        self._size = size
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        """The principal of ``token``, or UNAUTHENTICATED from the wrapped verifier."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        principal = self._verify(token)
        exp = principal.claims.get("exp")
        if isinstance(exp, (int, float)):
            if len(self._verified) >= self._size:
                self._verified.clear()
            self._verified[token] = (principal, float(exp))
        return principal
