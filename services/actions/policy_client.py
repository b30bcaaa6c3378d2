"""Asking the policy service (Check / BatchCheck) with the action service's own service token.

Any transport failure, timeout or NOT_SERVING answer becomes UNAVAILABLE
``POLICY_UNAVAILABLE``: the caller acts only on an explicit allow (fail-closed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.actions import errors
from services.common.tokens import mint_service_token

TOKEN_TTL_S = 300
TOKEN_REFRESH_S = 60
UNKNOWN_WORKSPACE = policy_pb2.DECISION_REASON_UNKNOWN_WORKSPACE


@dataclass(frozen=True)
class Decision:
    """One policy decision."""

    allowed: bool
    reason: int
    roles: tuple[str, ...]
    policy_version: str
    decision_id: str

    @property
    def has_role(self) -> bool:
        """Whether the subject holds any role in the workspace."""
        return bool(self.roles) and self.reason != UNKNOWN_WORKSPACE


@dataclass(frozen=True)
class Question:
    """One Check question."""

    subject: str
    workspace_id: str
    action: str
    resource: str


class PolicyClient:
    """A channel to the policy service plus a cached, refreshed ``svc:actions`` token."""

    def __init__(
        self,
        target: str,
        service_secret: str,
        *,
        timeout_ms: int = 200,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if not service_secret:
            raise ValueError("FLEETWARD_SERVICE_JWT_SECRET is needed to call the policy service")
        self._secret = service_secret
        self._timeout_s = timeout_ms / 1000
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials)
        self._stub = policy_pb2_grpc.PolicyServiceStub(self._channel)
        self._token = ""
        self._token_expires = 0.0

    def _bearer(self) -> tuple[tuple[str, str], ...]:
        now = time.time()
        if now > self._token_expires - TOKEN_REFRESH_S:
            self._token = mint_service_token(self._secret, "actions", ttl_s=TOKEN_TTL_S)
            self._token_expires = now + TOKEN_TTL_S
        return (("authorization", f"Bearer {self._token}"),)

    def _timeout(self, remaining_s: float | None) -> float:
        if remaining_s is None:
            return self._timeout_s
        if remaining_s <= 0:
            raise errors.deadline_exceeded()
        return min(self._timeout_s, remaining_s)

    async def check(self, question: Question, remaining_s: float | None) -> Decision:
        """Decide one question within the policy budget and the caller's remaining deadline."""
        return (await self.batch_check([question], remaining_s))[0]

    async def batch_check(
        self, questions: Sequence[Question], remaining_s: float | None
    ) -> list[Decision]:
        """Decide several questions against one policy version."""
        timeout = self._timeout(remaining_s)
        checks = [
            policy_pb2.CheckRequest(
                subject=q.subject, workspace_id=q.workspace_id, action=q.action, resource=q.resource
            )
            for q in questions
        ]
        try:
            if len(checks) == 1:
                one = await self._stub.Check(checks[0], timeout=timeout, metadata=self._bearer())
                results = [one]
            else:
                batch = await self._stub.BatchCheck(
                    policy_pb2.BatchCheckRequest(checks=checks),
                    timeout=timeout,
                    metadata=self._bearer(),
                )
                results = list(batch.results)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if (
                code == grpc.StatusCode.DEADLINE_EXCEEDED
                and remaining_s is not None
                and (remaining_s <= self._timeout_s)
            ):
                raise errors.deadline_exceeded() from exc
            raise errors.policy_unavailable(f"{code.name}: {exc.details()}") from exc
        except (grpc.RpcError, grpc.aio.UsageError) as exc:
            raise errors.policy_unavailable(type(exc).__name__) from exc
        if len(results) != len(checks):
            raise errors.policy_unavailable(
                "the policy service answered the wrong number of checks"
            )
        return [
            Decision(r.allowed, r.reason, tuple(r.roles), r.policy_version, r.decision_id)
            for r in results
        ]

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
