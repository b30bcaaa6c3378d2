"""``make token SUB=…``: print a dev token for the local setup."""

from __future__ import annotations

import os
from collections.abc import Mapping

from services.common.subjects import SERVICE_PREFIX
from services.common.tokens import mint_service_token, mint_user_token
from services.dev.secrets import apply_to_env

# Dev tokens live an hour: a pasted one that leaks is soon worthless; make token mints more.
DEV_TOKEN_TTL_S = 3600


def token_for(subject: str) -> str:
    """A user token for ``subject``, or a service token when it starts with ``svc:``."""
    env = dict(os.environ)
    apply_to_env(env)
    if subject.startswith(SERVICE_PREFIX):
        return mint_service_token(
            env["FLEETWARD_SERVICE_JWT_SECRET"], subject, ttl_s=DEV_TOKEN_TTL_S
        )
    if not env.get("FLEETWARD_JWT_SECRET"):
        raise SystemExit(
            "FLEETWARD_JWT_SECRET is unset (with a JWKS file, tokens come from your IdP)"
        )
    return dev_user_token(env, subject)


def dev_user_token(env: Mapping[str, str], subject: str) -> str:
    """A dev user token that the services configured by ``env`` accept (its secret, and
    the audience and issuer they check when set)."""
    return mint_user_token(
        env["FLEETWARD_JWT_SECRET"],
        subject,
        audience=env.get("FLEETWARD_JWT_AUDIENCE") or None,
        issuer=env.get("FLEETWARD_JWT_ISSUER") or None,
        ttl_s=DEV_TOKEN_TTL_S,
    )
