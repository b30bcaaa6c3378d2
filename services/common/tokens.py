"""Minting and verifying the JWTs of docs/architecture.md §8.

User tokens: HS256 with ``FLEETWARD_JWT_SECRET``, or RS256/ES256 with keys from a JWKS
file (chosen by ``kid``). Service tokens (``sub = svc:<name>``, audience
``fleetward-policy``) are HS256 with the separate ``FLEETWARD_SERVICE_JWT_SECRET``, so the
user-token key can never mint a service identity. Who a token may name is
:mod:`services.common.subjects`; a refusal's words (and the hint for a token of the other
kind) are :mod:`services.common.token_claims`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from services.common.status import ServiceError, unauthenticated
from services.common.subjects import SERVICE_PREFIX, is_reserved
from services.common.token_claims import (
    SERVICE_AUDIENCE,
    require_numeric_dates,
    token_problem,
    wrong_kind_refusal,
)

# A token may live at most this long (``FLEETWARD_JWT_MAX_TTL``): a leaked one expires soon.
DEFAULT_MAX_TTL_S = 24 * 3600

_ASYMMETRIC = ["RS256", "ES256"]


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
        return wrong_kind_refusal(message, token, "service", self._hint)

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
            raise wrong_kind_refusal(message, token, "user", self._hint) from exc
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
