"""Asking the policy service (Check / BatchCheck) with the action service's own service token.

Any transport failure, timeout or NOT_SERVING answer becomes UNAVAILABLE
``POLICY_UNAVAILABLE``: the caller acts only on an explicit allow (fail-closed).

With tracing on, each question is a ``policy.check`` (or ``policy.check_resources``) span
around its calls, carrying the answer's policy version and decision ids, and the channel's
interceptors propagate the trace to the policy service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.actions import errors
from services.common import tracing
from services.common.tokens import mint_service_token

log = logging.getLogger(__name__)

TOKEN_TTL_S = 300
TOKEN_REFRESH_S = 60
UNKNOWN_WORKSPACE = policy_pb2.DECISION_REASON_UNKNOWN_WORKSPACE
# CheckResources (docs/architecture.md §5.9 Deadlines): calls of at most this many paths
# (the policy service accepts 20,000), one after the other, each with its own budget: the
# policy budget plus this much per path (5,000 paths: 0.2 + 1.0 s), never past the
# caller's deadline. Measured on 2 cores, the policy service spends ~12 µs of CPU per
# path; a call of 5,000 paths took 0.05 s idle, up to 0.22 s with two busy loops and
# 0.40 s with four, and during fleet pauses with three (load average 6) its decision
# alone took up to 0.59 s (20,000 paths: up to 1.44 s, past the 1.2 s that 50 µs/path
# gave them). 1.2 s a call is twice the slowest seen, and a policy service that does not
# answer fails the question after 1.2 s, as before. Calls sent at once were no faster in
# all, and the last one waited for all of them (the service decides one batch at a time).
RESOURCES_PER_CALL = 5_000
TIME_PER_RESOURCE_S = 0.000200
MAX_ANSWER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PolicyDecision:
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


@dataclass(frozen=True)
class ResourcesDecision:
    """One subject and permission over many resources, decided under one policy version."""

    policy_version: str
    decision_id: str  # one per CheckResources call, comma-joined when it took several
    roles: tuple[str, ...]
    denied: dict[str, int]  # resource path -> DecisionReason

    @property
    def has_role(self) -> bool:
        """Whether the subject holds any role in the workspace."""
        return bool(self.roles)


class PolicyGateway:
    """A channel to the policy service plus a cached, refreshed ``svc:actions`` token."""

    def __init__(
        self,
        target: str,
        service_secret: str,
        *,
        timeout_ms: int = 200,
        credentials: grpc.ChannelCredentials | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        if not service_secret:
            raise ValueError("FLEETWARD_SERVICE_JWT_SECRET is needed to call the policy service")
        self._secret = service_secret
        self._timeout_s = timeout_ms / 1000
        # A CheckResources answer of 5,000 denials, each naming a long deny line, can pass
        # gRPC's default 4 MB.
        options = [("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
        # Tracing's interceptors only (none while it is off: any interceptor costs every call).
        chain = list(interceptors) or None
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=options, interceptors=chain)
        else:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=options, interceptors=chain
            )
        self._stub = policy_pb2_grpc.PolicyServiceStub(self._channel)
        self._token = ""
        self._token_expires = 0.0

    def _bearer(self) -> tuple[tuple[str, str], ...]:
        now = time.time()
        if now > self._token_expires - TOKEN_REFRESH_S:
            self._token = mint_service_token(self._secret, "actions", ttl_s=TOKEN_TTL_S)
            self._token_expires = now + TOKEN_TTL_S
        return (("authorization", f"Bearer {self._token}"),)

    def _timeout(self, remaining_s: float | None, extra_s: float = 0.0) -> float:
        budget = self._timeout_s + extra_s
        if remaining_s is None:
            return budget
        if remaining_s <= 0:
            raise errors.deadline_exceeded()
        return min(budget, remaining_s)

    async def check(self, question: Question, remaining_s: float | None) -> PolicyDecision:
        """Decide one question within the policy budget and the caller's remaining deadline."""
        return (await self.batch_check([question], remaining_s))[0]

    async def batch_check(
        self, questions: Sequence[Question], remaining_s: float | None
    ) -> list[PolicyDecision]:
        """Decide several questions against one policy version."""
        with tracing.span("policy.check") as span:
            decisions = await self._batch_check(questions, remaining_s)
            if span is not None:
                span.set_attributes(
                    {
                        "fleetward.permissions": sorted({q.action for q in questions}),
                        "fleetward.questions": len(decisions),
                        "fleetward.allowed": sum(d.allowed for d in decisions),
                        "fleetward.policy_version": ",".join(
                            sorted({d.policy_version for d in decisions})
                        ),
                        "fleetward.decision_ids": [d.decision_id for d in decisions],
                    }
                )
            return decisions

    async def _batch_check(
        self, questions: Sequence[Question], remaining_s: float | None
    ) -> list[PolicyDecision]:
        timeout = self._timeout(remaining_s)
        checks = [
            policy_pb2.CheckRequest(
                subject=q.subject, workspace_id=q.workspace_id, action=q.action, resource=q.resource
            )
            for q in questions
        ]
        if len(checks) == 1:
            results = [await self._ask(self._stub.Check, checks[0], timeout, remaining_s)]
        else:
            request = policy_pb2.BatchCheckRequest(checks=checks)
            batch = await self._ask(self._stub.BatchCheck, request, timeout, remaining_s)
            results = list(batch.results)
        if len(results) != len(checks):
            raise errors.policy_unavailable(
                "the policy service answered the wrong number of checks"
            )
        return [
            PolicyDecision(r.allowed, r.reason, tuple(r.roles), r.policy_version, r.decision_id)
            for r in results
        ]

    async def check_resources(
        self,
        subject: str,
        workspace_id: str,
        permission: str,
        resources: Sequence[str],
        remaining_s: float | None,
    ) -> ResourcesDecision:
        """Decide ``permission`` for ``subject`` on every resource, under one policy version.

        More than :data:`RESOURCES_PER_CALL` resources take several calls, one after the
        other, each with its own budget and all within ``remaining_s``; should a reload
        land between them, the whole question is asked again (once).
        """
        if not resources:
            raise ValueError("check_resources needs at least one resource")
        with tracing.span("policy.check_resources") as span:
            decision = await self._decide_resources(
                subject, workspace_id, permission, resources, remaining_s
            )
            if span is not None:
                span.set_attributes(
                    {
                        "fleetward.permission": permission,
                        "fleetward.resources": len(resources),
                        "fleetward.denied": len(decision.denied),
                        "fleetward.policy_version": decision.policy_version,
                        "fleetward.decision_ids": decision.decision_id.split(","),
                    }
                )
            return decision

    async def _decide_resources(
        self,
        subject: str,
        workspace_id: str,
        permission: str,
        resources: Sequence[str],
        remaining_s: float | None,
    ) -> ResourcesDecision:
        deadline = None if remaining_s is None else time.monotonic() + remaining_s
        for _ in range(2):
            answers = await self._ask_in_calls(
                subject, workspace_id, permission, resources, deadline
            )
            if answers is not None:
                return _merge(answers)
        raise errors.policy_unavailable("the policy was reloaded during the check")

    async def _ask_in_calls(
        self,
        subject: str,
        workspace_id: str,
        permission: str,
        resources: Sequence[str],
        deadline: float | None,
    ) -> list[policy_pb2.CheckResourcesResponse] | None:
        """One call per :data:`RESOURCES_PER_CALL` paths, one after the other, each given
        what is left of ``deadline`` (monotonic) at most; None as soon as an answer's
        policy version differs from the first one's.
        """
        answers: list[policy_pb2.CheckResourcesResponse] = []
        for start in range(0, len(resources), RESOURCES_PER_CALL):
            left = None if deadline is None else deadline - time.monotonic()
            part = resources[start : start + RESOURCES_PER_CALL]
            answer = await self._check_resources(subject, workspace_id, permission, part, left)
            if answers and answer.policy_version != answers[0].policy_version:
                return None
            answers.append(answer)
        return answers

    async def _check_resources(
        self,
        subject: str,
        workspace_id: str,
        permission: str,
        resources: Sequence[str],
        remaining_s: float | None,
    ) -> policy_pb2.CheckResourcesResponse:
        request = policy_pb2.CheckResourcesRequest(
            subject=subject, workspace_id=workspace_id, action=permission, resources=resources
        )
        timeout = self._timeout(remaining_s, len(resources) * TIME_PER_RESOURCE_S)
        answer: policy_pb2.CheckResourcesResponse = await self._ask(
            self._stub.CheckResources, request, timeout, remaining_s
        )
        # Only denials are listed, so a short or garbled answer would read as "allowed":
        # an answer that does not account for every resource once is no answer (fail
        # closed). A denial listed twice would let the count hide a missing one.
        consistent = (
            answer.allowed_count + len(answer.denied) == len(resources)
            and len({d.index for d in answer.denied}) == len(answer.denied)
            and all(
                0 <= d.index < len(resources) and resources[d.index] == d.resource
                for d in answer.denied
            )
        )
        if not consistent:
            raise errors.policy_unavailable("CheckResources answered for other resources")
        return answer

    async def _ask(self, rpc: Any, request: Any, budget_s: float, remaining_s: float | None) -> Any:
        """One call with the service token; every failure is POLICY_UNAVAILABLE, except the
        caller's own deadline running out (DEADLINE_EXCEEDED).
        """
        try:
            return await rpc(request, timeout=budget_s, metadata=self._bearer())
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if (
                code == grpc.StatusCode.DEADLINE_EXCEEDED
                and remaining_s is not None
                and remaining_s <= budget_s
            ):
                raise errors.deadline_exceeded() from exc
            # The policy service's own words stay in our log: a caller learns the code only.
            log.warning("policy call failed: %s: %s", code.name, exc.details())
            raise errors.policy_unavailable(code.name) from exc
        except (grpc.RpcError, grpc.aio.UsageError) as exc:
            raise errors.policy_unavailable(type(exc).__name__) from exc

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()


def _merge(answers: Sequence[policy_pb2.CheckResourcesResponse]) -> ResourcesDecision:
    """The answers of one question's calls (one policy version) as one decision."""
    denied: dict[str, int] = {}
    for answer in answers:
        denied.update((d.resource, d.reason) for d in answer.denied)
    return ResourcesDecision(
        answers[0].policy_version,
        ",".join(a.decision_id for a in answers),
        tuple(answers[0].roles),
        denied,
    )
