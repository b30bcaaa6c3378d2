"""Who is asking: the caller's bearer token, from the auth proxy's header or the dev cookie.

The console never verifies a token: the action service does, on every call made with it.
The claims read here (``sub``, ``exp``) only label the page and send an expired session
back to sign-in early; nothing is allowed or refused because of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import Response

from services.common.status import ServiceError
from services.common.token_claims import unverified_claims
from services.common.tokens import UserTokenVerifier, mint_user_token
from services.console.settings import AuthMode, ConsoleSettings, DevSignIn

COOKIE = "fleetward_session"
# Dev sessions are short: a copied cookie is soon worthless, and signing in again is a click.
DEV_SESSION_S = 3600
_MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class Caller:
    """A signed-in user as far as the console can tell before the service verifies.

    Attributes:
        token: The bearer token, forwarded unchanged to the action service.
        subject: Its ``sub`` claim, for display and for sharing one live stream.
        expires_at: Its ``exp`` claim (Unix seconds), or None.
    """

    token: str
    subject: str
    expires_at: float | None

    @property
    def expired(self) -> bool:
        """Whether ``exp`` has passed (the service would answer UNAUTHENTICATED)."""
        return self.expires_at is not None and self.expires_at <= time.time()


def caller_of(conn: HTTPConnection, settings: ConsoleSettings) -> Caller | None:
    """The caller's token and claims, or None when the request carries no readable token.

    In proxy mode only the ``Authorization`` header counts; in dev mode only the cookie
    (so neither mode can be talked into the other's credential).
    """
    if settings.auth is AuthMode.PROXY:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
    else:
        token = conn.cookies.get(COOKIE, "")
    token = token.strip()
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    claims = unverified_claims(token)
    if claims is None:
        return None
    subject, exp = claims.get("sub"), claims.get("exp")
    if not isinstance(subject, str) or not subject:
        return None
    try:
        expires = float(exp) if isinstance(exp, int | float) else None
    except OverflowError:  # an integer past a double's range: no token we would accept
        return None
    return Caller(token=token, subject=subject, expires_at=expires)


def verified(token: str, dev: DevSignIn) -> bool:
    """Whether ``token`` is one the dev sign-in could have minted (checked with its secret,
    audience and issuer by the services' own verifier).
    """
    verifier = UserTokenVerifier(secret=dev.jwt_secret, audience=dev.audience, issuer=dev.issuer)
    try:
        verifier.verify(token)
    except ServiceError:
        return False
    return True


def sign_in(response: Response, dev: DevSignIn, subject: str, *, secure: bool) -> None:
    """Mint a dev token for ``subject`` into the session cookie of ``response``."""
    token = mint_user_token(
        dev.jwt_secret, subject, audience=dev.audience, issuer=dev.issuer, ttl_s=DEV_SESSION_S
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=DEV_SESSION_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def sign_out(response: Response, *, secure: bool) -> None:
    """Drop the session cookie."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
