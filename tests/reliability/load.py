"""A load generator for the reliability tests: many callers, retries with one request_id.

Each request is one Execute on a random agent of a random workspace, or (about
``rollback_share``) a Rollback of an action that succeeded earlier. About
``retry_share`` of them are retried with the same request_id, in one of three ways:
concurrently with the first attempt (it is still running), after a client-side deadline
that cut the first attempt short, or after the first attempt finished. Transient
failures (UNAVAILABLE, ABORTED ``REQUEST_IN_PROGRESS``, DEADLINE_EXCEEDED) are retried
with the same request_id, as the client library does. Everything each caller saw is
kept so the tests can compare it with the database.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc

from tests.actions.helpers import details, execute_request
from tests.conftest import Secrets
from tests.reliability import counters

C = grpc.StatusCode
TRANSIENT = {C.UNAVAILABLE, C.ABORTED, C.DEADLINE_EXCEEDED, C.CANCELLED}
# Final answers the contract allows for these requests (besides success).
FINAL = {
    # ALREADY_IN_STATE (resume of an active agent: nothing recorded); for rollbacks
    # SUPERSEDED (row failed), ALREADY_ROLLED_BACK (nothing recorded)
    C.FAILED_PRECONDITION,
    C.INTERNAL,  # ACTION_EXECUTION_FAILED (e.g. interrupted by a crash): the row says failed
}

FINAL_NAMES = {code.name for code in FINAL}
Request = actions_pb2.ExecuteRequest | actions_pb2.RollbackRequest


@dataclass
class Outcome:
    """What the callers of one request_id saw."""

    workspace_id: uuid.UUID
    subject: str
    request_id: str
    successes: set[str] = field(default_factory=set)  # action ids returned with OK
    codes: list[str] = field(default_factory=list)  # every attempt's code name
    reasons: list[str] = field(default_factory=list)
    final: str = ""


def random_request(
    rng: random.Random, ws: uuid.UUID, agents: Sequence[str]
) -> tuple[str, actions_pb2.ExecuteRequest]:
    """A random Execute (subject, request) on one agent."""
    agent = rng.choice(agents)
    kind = rng.choices(["pause", "resume", "budget", "restart"], weights=[4, 3, 2, 1])[0]
    rid = f"rel-{uuid.uuid4().hex}"
    if kind == "pause":
        params: dict[str, Any] = (
            {"indefinite": True}
            if rng.random() < 0.5
            else {"duration_minutes": rng.randint(60, 600)}
        )
        return "bob", execute_request(ws, "pause_agent", target=agent, request_id=rid, **params)
    if kind == "resume":
        return "bob", execute_request(ws, "resume_agent", target=agent, request_id=rid)
    if kind == "budget":
        cents = rng.randint(0, 10**6)
        return "alice", execute_request(
            ws, "set_budget", target=agent, request_id=rid, monthly_limit_cents=cents
        )
    return "alice", execute_request(ws, "restart_agent", target=agent, request_id=rid)


class Load:
    """Sends requests to one or more action services (picked at random per attempt)."""

    def __init__(
        self,
        targets: Sequence[str],
        secrets: Secrets,
        workspaces: Sequence[uuid.UUID],
        agents: Sequence[str],
        *,
        retry_share: float = 0.2,
        rollback_share: float = 0.1,
        deadline_s: float = 10.0,
        max_attempts: int = 60,
        seed: int = 8,
    ) -> None:
        self.targets = list(targets)
        self.secrets = secrets
        self.workspaces = list(workspaces)
        self.agents = list(agents)
        self.retry_share = retry_share
        self.rollback_share = rollback_share
        self.deadline_s = deadline_s
        self.max_attempts = max_attempts
        self.rng = random.Random(seed)
        self.outcomes: list[Outcome] = []
        self._tokens = {s: secrets.user_token(s) for s in ("alice", "bob")}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._done: dict[uuid.UUID, list[str]] = {}  # rollbackable successes per workspace

    def _stub(self) -> actions_pb2_grpc.ActionServiceAsyncStub:
        target = self.rng.choice(self.targets)
        if target not in self._channels:
            self._channels[target] = grpc.aio.insecure_channel(target)
        return actions_pb2_grpc.ActionServiceStub(self._channels[target])

    async def _attempt(self, out: Outcome, request: Request, deadline: float) -> grpc.StatusCode:
        counters.record("requests")
        md = (("authorization", f"Bearer {self._tokens[out.subject]}"),)
        stub = self._stub()
        try:
            if isinstance(request, actions_pb2.RollbackRequest):
                action = await stub.Rollback(request, metadata=md, timeout=deadline)
            else:
                action = await stub.Execute(request, metadata=md, timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            out.codes.append(exc.code().name)
            if exc.code() not in (C.DEADLINE_EXCEEDED, C.UNAVAILABLE, C.CANCELLED):
                out.reasons.append(f"{details(exc).reason}: {exc.details()}")
            return exc.code()
        out.codes.append("OK")
        out.successes.add(action.action_id)
        if action.action_type in ("pause_agent", "resume_agent", "set_budget"):
            self._done.setdefault(out.workspace_id, []).append(action.action_id)
        return C.OK

    async def _until_final(self, out: Outcome, request: Request) -> None:
        for attempt in range(self.max_attempts):
            code = await self._attempt(out, request, self.deadline_s)
            if code not in TRANSIENT:
                out.final = code.name
                return
            counters.record("retries")
            await asyncio.sleep(min(0.02 * 2 ** min(attempt, 5), 0.5))
        out.final = "GAVE_UP"

    async def one(self) -> None:
        """One request_id, retried per the plan."""
        ws = self.rng.choice(self.workspaces)
        request: Request
        subject, request = random_request(self.rng, ws, self.agents)
        done = self._done.get(ws)
        if done and self.rng.random() < self.rollback_share:
            subject, request = (
                "alice",
                actions_pb2.RollbackRequest(
                    workspace_id=str(ws),
                    action_id=self.rng.choice(done),
                    reason="load rollback",
                    request_id=f"rel-{uuid.uuid4().hex}",
                    skip_superseded=self.rng.random() < 0.5,
                ),
            )
        out = Outcome(ws, subject, request.request_id)
        self.outcomes.append(out)
        roll = self.rng.random()
        if roll < self.retry_share / 3:  # a second caller while the first still runs
            counters.record("retries")
            await asyncio.gather(self._until_final(out, request), self._until_final(out, request))
        elif roll < 2 * self.retry_share / 3:  # the first gives up after a short deadline
            await self._attempt(out, request, self.rng.uniform(0.001, 0.05))
            counters.record("retries")
            await self._until_final(out, request)
        elif roll < self.retry_share:  # a repeat after the first finished
            await self._until_final(out, request)
            counters.record("retries")
            await self._until_final(out, request)
        else:
            await self._until_final(out, request)

    async def run(
        self, n: int, concurrency: int = 64, stop: asyncio.Event | None = None
    ) -> list[Outcome]:
        """Send ``n`` request ids (fewer once ``stop`` is set) from ``concurrency`` callers."""
        queue = iter(range(n))

        async def caller() -> None:
            for _ in queue:
                if stop is not None and stop.is_set():
                    return
                await self.one()

        try:
            await asyncio.gather(*(caller() for _ in range(concurrency)))
        finally:
            for channel in self._channels.values():
                await channel.close()
            self._channels.clear()
        return self.outcomes


async def compare_with_database(pool: asyncpg.Pool, outcomes: Sequence[Outcome]) -> list[str]:
    """Every way the database disagrees with what the callers saw."""
    rows = await pool.fetch(
        "SELECT workspace_id, actor_user_id, request_id, action_id, status "
        "FROM action_audit_log WHERE request_id = ANY($1::text[])",
        [o.request_id for o in outcomes],
    )
    by_key: dict[tuple[uuid.UUID, str, str], list[asyncpg.Record]] = {}
    for r in rows:
        by_key.setdefault((r["workspace_id"], r["actor_user_id"], r["request_id"]), []).append(r)
    problems = []
    for o in outcomes:
        found = by_key.get((o.workspace_id, o.subject, o.request_id), [])
        if len(found) > 1:
            problems.append(f"{o.request_id}: {len(found)} actions")
        if len(o.successes) > 1:
            problems.append(f"{o.request_id}: callers saw different actions {o.successes}")
        if o.successes and (
            not found
            or str(found[0]["action_id"]) not in o.successes
            or found[0]["status"] not in ("completed", "rolled_back")
        ):
            state = found[0]["status"] if found else "no row"
            problems.append(f"{o.request_id}: a caller saw success but the action is {state}")
        if o.final == "OK" and not found:
            problems.append(f"{o.request_id}: success without an action")
        if o.final not in ("OK", "GAVE_UP") and o.final not in FINAL_NAMES:
            problems.append(f"{o.request_id}: final {o.final} {o.reasons[-1:]} ({o.codes})")
        if o.final == "GAVE_UP":
            problems.append(f"{o.request_id}: never got a final answer ({o.codes[-5:]})")
        if found and found[0]["status"] in ("pending", "in_progress"):
            problems.append(f"{o.request_id}: left {found[0]['status']}")
    return problems
