"""Authenticating callers: ``authorization: Bearer <JWT>`` (docs/architecture.md §8)."""

from __future__ import annotations

import grpc

from services.actions.settings import ActionSettings
from services.common.status import unauthenticated
from services.common.subjects import subject_problem
from services.common.tokens import Principal, UserTokenVerifier, VerifiedTokens, bearer_token

# The refusal of a service token (or any token that looks like one and no key verifies).
WRONG_KIND_HINT = (
    "this is the action service: it takes user tokens (a person's subject, signed with "
    "FLEETWARD_JWT_SECRET or a key of FLEETWARD_JWT_JWKS_FILE); this looks like a service "
    "token. Dev: make token SUB=bob"
)


class Authenticator:
    """Turns a call's metadata into a :class:`Principal` or raises UNAUTHENTICATED."""

    def __init__(self, verifier: UserTokenVerifier) -> None:
        self._verifier = VerifiedTokens(verifier.verify)

    @classmethod
    def from_settings(cls, settings: ActionSettings) -> Authenticator:
        """From FLEETWARD_JWT_SECRET / FLEETWARD_JWT_JWKS_FILE / FLEETWARD_JWT_AUDIENCE."""
        return cls(
            UserTokenVerifier(
                secret=settings.jwt_secret,
                jwks_file=settings.jwt_jwks_file,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                max_ttl_s=settings.jwt_max_ttl_s,
                wrong_kind_hint=WRONG_KIND_HINT,
            )
        )

    def authenticate(
        self,
        context: grpc.aio.ServicerContext[object, object],
        metadata: grpc.aio.Metadata | None = None,
    ) -> Principal:
        """The verified caller of this RPC (``metadata``: the call's, when already read)."""
        if metadata is None:
            metadata = context.invocation_metadata()
        principal = self._verifier.verify(bearer_token(metadata))
        # The subject is stored in the audit log and sent to the policy service as is.
        problem = subject_problem(principal.subject)
        if problem is not None:
            raise unauthenticated(f"the token's subject is not usable: {problem}")
        return principal
