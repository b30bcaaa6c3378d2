"""Who may ask the policy service: service callers only (docs/architecture.md §8).

A caller proves it is a service with a service JWT (``sub`` ``svc:<name>``, audience
``fleetward-policy``, signed with ``FLEETWARD_SERVICE_JWT_SECRET``) whose subject is one of
``FLEETWARD_POLICY_ALLOWED_CALLERS`` (default ``svc:actions``), or, when the server
requires client certificates, with its verified mTLS certificate (the CA is then the
list of who may ask). A user token, even one with a forged ``svc:`` subject, fails the
signature check: the secrets differ. One that looks like a user token is told what to
send instead (``WRONG_KIND_HINT``).
"""

from __future__ import annotations

from typing import Any

import grpc

from services.common.status import ServiceError, unauthenticated
from services.common.tokens import ServiceTokenVerifier, VerifiedTokens, bearer_token

# The refusal of a user token (or any token that looks like one and the secret does not verify).
WRONG_KIND_HINT = (
    "this is the policy service: it takes service tokens (subject svc:NAME, signed with "
    "FLEETWARD_SERVICE_JWT_SECRET); this looks like a user token. Dev: make token SUB=svc:debug"
)


def permission_denied_caller(subject: str) -> ServiceError:
    """PERMISSION_DENIED for a valid service token whose subject may not ask."""
    return ServiceError(
        grpc.StatusCode.PERMISSION_DENIED,
        "CALLER_NOT_ALLOWED",
        f"{subject} may not ask this policy service (FLEETWARD_POLICY_ALLOWED_CALLERS)",
        metadata={"caller": subject},
    )


def _has_authorization(metadata: Any) -> bool:
    return any(key.lower() == "authorization" for key, _ in metadata or ())


def _peer_certificate_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    auth = context.auth_context()
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth.get(key, ()):
            return bytes(value).decode(errors="replace")
    return None


class CallerAuthenticator:
    """Authenticates a call and names the caller (``svc:<name>`` or ``mtls:<cert name>``)."""

    def __init__(
        self,
        *,
        service_jwt_secret: str,
        mtls: bool,
        allowed_callers: frozenset[str] = frozenset({"svc:actions"}),
    ) -> None:
        """Create the authenticator.

        Args:
            service_jwt_secret: The service-token secret; empty disables tokens.
            mtls: The server verifies client certificates (``FLEETWARD_TLS_CLIENT_CA``).
            allowed_callers: Service subjects that may ask; ``*`` allows any.

        Raises:
            ValueError: When neither tokens nor mTLS are configured (nobody could call).
        """
        if not service_jwt_secret and not mtls:
            raise ValueError(
                "the policy service needs FLEETWARD_SERVICE_JWT_SECRET or "
                "FLEETWARD_TLS_CLIENT_CA to authenticate its callers"
            )
        self._verifier = (
            VerifiedTokens(
                ServiceTokenVerifier(
                    secret=service_jwt_secret, wrong_kind_hint=WRONG_KIND_HINT
                ).verify
            )
            if service_jwt_secret
            else None
        )
        self._mtls = mtls
        self._allowed = None if "*" in allowed_callers else allowed_callers

    def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """Return the caller's name or raise UNAUTHENTICATED (a ``ServiceError``)."""
        metadata = context.invocation_metadata()
        if _has_authorization(metadata) or not self._mtls:
            if self._verifier is None:
                raise unauthenticated("this policy service accepts mTLS client certificates only")
            subject = self._verifier.verify(bearer_token(metadata)).subject
            if self._allowed is not None and subject not in self._allowed:
                raise permission_denied_caller(subject)
            return subject
        name = _peer_certificate_name(context)
        if name is None:
            raise unauthenticated("a service token or a client certificate is required")
        return f"mtls:{name}"
