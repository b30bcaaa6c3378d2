"""PolicyService RPCs: authenticate, validate, decide against one snapshot, log.

Translation only: decisions come from the snapshot's ``Decider`` (fail-closed through
``decide_safely``), validation from ``queries``, caller checks from ``auth``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc
from google.protobuf import timestamp_pb2

from services.common import funnel
from services.common.metrics import child
from services.common.status import ServiceError, invalid_argument
from services.policy import decision_log, metrics
from services.policy.auth import CallerAuthenticator
from services.policy.engine import decide_resources_safely, decide_safely
from services.policy.loader import PolicySnapshot
from services.policy.queries import (
    Query,
    ResourcesQuery,
    parse_batch,
    parse_query,
    parse_resources,
)
from services.policy.reload import PolicyState

Context = grpc.aio.ServicerContext[Any, Any]
# Every handler's body is its work; every failure leaves as one rich status.
rpc = funnel.unary_rpc()
# GetPolicyInfo lists at most this many warnings (a policy can have one per line).
MAX_INFO_WARNINGS = 100
# Batches larger than this are decided in a worker thread.
THREAD_BATCH = 200
_REASONS = {
    name.removeprefix("DECISION_REASON_"): value
    for name, value in policy_pb2.DecisionReason.items()
}


def _not_loaded(state: PolicyState) -> ServiceError:
    detail = f": {state.last_reload_error}" if state.last_reload_error else ""
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE,
        "POLICY_NOT_LOADED",
        f"no policy has loaded yet{detail}",
    )


def _listed_warnings(warnings: Sequence[str]) -> list[str]:
    """``warnings``, or their first MAX_INFO_WARNINGS - 1 and a line saying how many more."""
    if len(warnings) <= MAX_INFO_WARNINGS:
        return list(warnings)
    shown = list(warnings[: MAX_INFO_WARNINGS - 1])
    more = len(warnings) - len(shown)
    return [*shown, f"and {more} more warnings (python -m services.policy validate lists all)"]


def _timestamp(value: Any) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Check, BatchCheck, CheckResources and GetPolicyInfo over the state a ``Reloader``
    maintains.
    """

    def __init__(self, state: PolicyState, authenticator: CallerAuthenticator) -> None:
        self._state = state
        self._auth = authenticator
        self._batches = asyncio.Semaphore(1)  # large CheckResources decided one at a time

    def _serving(self) -> PolicySnapshot:
        snapshot = self._state.snapshot  # read the one reference once per RPC
        if snapshot is None:
            raise _not_loaded(self._state)
        return snapshot

    def _decide(
        self, snapshot: PolicySnapshot, caller: str, query: Query
    ) -> policy_pb2.CheckResponse:
        start = time.perf_counter()
        decision = decide_safely(
            snapshot.decider,
            query.subject,
            query.workspace,
            query.action,
            query.resource,
            explain=query.explain,
        )
        latency_us = int((time.perf_counter() - start) * 1e6)
        decision_id = str(uuid.uuid4())
        child(
            metrics.DECISIONS, "allow" if decision.allowed else "deny", decision.reason.value
        ).inc()
        decision_log.record(
            decision_id=decision_id,
            caller=caller,
            subject=query.subject,
            workspace=query.workspace,
            action=query.action,
            resource=query.resource,
            decision=decision,
            policy_version=snapshot.version,
            latency_us=latency_us,
        )
        return policy_pb2.CheckResponse(
            allowed=decision.allowed,
            reason=_REASONS[decision.reason.value],
            roles=decision.roles,
            policy_version=snapshot.version,
            decision_id=decision_id,
            matched_rule=decision.matched_rule if query.explain else "",
        )

    @rpc
    async def Check(
        self, request: policy_pb2.CheckRequest, context: Context
    ) -> policy_pb2.CheckResponse:
        """Decide one request."""
        caller = self._auth.authenticate(context)
        snapshot = self._serving()
        query, violations = parse_query(request)
        if query is None:
            raise invalid_argument(violations)
        return self._decide(snapshot, caller, query)

    @rpc
    async def BatchCheck(
        self, request: policy_pb2.BatchCheckRequest, context: Context
    ) -> policy_pb2.BatchCheckResponse:
        """Decide 1..100 requests, in order, against one snapshot."""
        caller = self._auth.authenticate(context)
        snapshot = self._serving()
        queries, violations = parse_batch(request)
        if violations:
            raise invalid_argument(violations)
        results = [self._decide(snapshot, caller, query) for query in queries]
        return policy_pb2.BatchCheckResponse(results=results, policy_version=snapshot.version)

    @rpc
    async def CheckResources(
        self, request: policy_pb2.CheckResourcesRequest, context: Context
    ) -> policy_pb2.CheckResourcesResponse:
        """Decide one subject and permission over 1..20,000 resources in one snapshot."""
        caller = self._auth.authenticate(context)
        snapshot = self._serving()
        query, violations = parse_resources(request)
        if query is None:
            raise invalid_argument(violations)
        if len(query.resources) > THREAD_BATCH and snapshot.decider.thread_safe:
            # 20,000 paths take ~0.2 s of CPU: decided (and answered) in a worker
            # thread, one batch at a time, so single Checks keep getting the event loop
            # (and the GIL) in between; the decider is immutable, so a thread may read it.
            async with self._batches:
                return await asyncio.to_thread(self._answer_resources, snapshot, caller, query)
        return self._answer_resources(snapshot, caller, query)

    def _answer_resources(
        self, snapshot: PolicySnapshot, caller: str, query: ResourcesQuery
    ) -> policy_pb2.CheckResourcesResponse:
        start = time.perf_counter()
        answer = decide_resources_safely(
            snapshot.decider, query.subject, query.workspace, query.action, query.resources
        )
        latency_us = int((time.perf_counter() - start) * 1e6)
        decision_id = str(uuid.uuid4())
        allowed_count = len(query.resources) - len(answer.denied)
        if allowed_count:
            child(metrics.DECISIONS, "allow", "ALLOWED").inc(allowed_count)
        for reason, count in Counter(d.reason.value for _, d in answer.denied).items():
            child(metrics.DECISIONS, "deny", reason).inc(count)
        decision_log.record_batch(
            decision_id=decision_id,
            caller=caller,
            subject=query.subject,
            workspace=query.workspace,
            action=query.action,
            resources=len(query.resources),
            denied=[(query.resources[i], decision) for i, decision in answer.denied],
            policy_version=snapshot.version,
            latency_us=latency_us,
        )
        return policy_pb2.CheckResourcesResponse(
            policy_version=snapshot.version,
            decision_id=decision_id,
            allowed_count=allowed_count,
            denied=[
                policy_pb2.ResourceDenial(
                    index=i,
                    resource=query.resources[i],
                    reason=_REASONS[decision.reason.value],
                    matched_rule=decision.matched_rule,
                )
                for i, decision in answer.denied
            ],
            roles=answer.roles,
        )

    @rpc
    async def GetPolicyInfo(
        self, request: policy_pb2.GetPolicyInfoRequest, context: Context
    ) -> policy_pb2.GetPolicyInfoResponse:
        """Describe the served policy (with its load's warnings) and the last reload (also
        before the first load).
        """
        self._auth.authenticate(context)
        state = self._state
        snapshot = state.snapshot
        return policy_pb2.GetPolicyInfoResponse(
            policy_version=snapshot.version if snapshot else "",
            loaded_at=_timestamp(snapshot.loaded_at if snapshot else None),
            rule_count=snapshot.rule_count if snapshot else 0,
            role_link_count=snapshot.role_link_count if snapshot else 0,
            last_reload_error=state.last_reload_error,
            last_reload_at=_timestamp(state.last_reload_at),
            warnings=_listed_warnings(snapshot.warnings if snapshot else ()),
        )
