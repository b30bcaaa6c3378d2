"""Property: every agent or budget that changes was changed by an action whose caller was
allowed that change on that resource's own path, by plain pycasbin.

Hypothesis draws small policies (allow and deny lines at fleet, department and agent
paths, role inheritance), agents in two departments and sequences of steps: Execute of
pause/resume/set_budget at every scope (with and without ``skip_denied``), Rollback of
earlier actions (with ``skip_denied`` and ``skip_superseded``) and agents moving between
departments. After each step the state is compared with the step before: each changed
agent and budget must be in the step's ``action_targets``, and a fresh
``casbin.Enforcer`` read from the same files must allow the action's caller the change's
permission (the action's own, or for a rollback the undo permission of the original) on
the resource's path as it was, and the action's permission on its own target. The rule
this replaced (one check of the named target) fails it within a few examples.

The real services run on an event loop of their own (a thread), so that Hypothesis can
drive them from a plain test and shrink a failing example.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import casbin
import pytest
from fleetward.client import (
    ActionParams,
    AsyncActionsClient,
    ClientConfig,
    PauseAgent,
    ResumeAgent,
    RetryPolicy,
    SetBudget,
)
from fleetward.client.errors import FleetwardError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.policy.server import PolicyServer
from tests.conftest import Secrets
from tests.servers import POLICIES, running_action_server, running_policy_server_handle

T = TypeVar("T")
DEPARTMENTS = ("d1", "d2")
AGENTS = ("a1", "a2", "a3", "a4")
ROLES = ("r1", "r2", "r3")
USERS = ("u1", "u2", "u3")
PERMISSION = {"pause": "actions:pause_agent", "resume": "actions:resume_agent"}
PERMISSION["budget"] = "actions:set_budget"
UNDO = {
    "pause_agent": "actions:resume_agent",
    "resume_agent": "actions:pause_agent",
    "set_budget": "actions:set_budget",
}
GLOBS = (
    "fleet",
    "fleet/**",
    "fleet/departments/d1",
    "fleet/departments/d1/**",
    "fleet/departments/d2/**",
    "fleet/departments/*/agents/a1",
    "fleet/departments/d1/agents/a2",
    "fleet/departments/d2/agents/*",
    "fleet/departments/*/agents/a[34]",
)
ACTIONS = (
    "actions:pause_agent",
    "actions:resume_agent",
    "actions:set_budget",
    "actions:rollback",
    "actions:*",
)


class Loop:
    """An event loop on a thread of its own; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coro`` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Stack:
    """Both services and a pool, on the loop; the policy directory they read."""

    policy: PolicyServer
    target: str
    pool: asyncpg.Pool
    policy_dir: Path
    secrets: Secrets


@pytest.fixture(scope="module")
def stack(
    database_dsn: str, dev_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Loop, Stack]]:
    """The services on their own loop (module-wide; each example reloads the policy)."""
    loop = Loop()
    policy_dir = tmp_path_factory.mktemp("property-policy")
    (policy_dir / "model.conf").write_text((POLICIES / "model.conf").read_text())
    (policy_dir / "policy.csv").write_text("p, r1, *, fleet, actions:read, allow\n")
    exits = contextlib.AsyncExitStack()

    async def start() -> Stack:
        built = await exits.enter_async_context(
            running_policy_server_handle(policy_dir, dev_secrets)
        )
        target = await exits.enter_async_context(
            running_action_server(
                database_dsn, f"127.0.0.1:{built.port}", dev_secrets, policy_timeout_ms=5000
            )
        )
        pool = await asyncpg.create_pool(database_dsn, min_size=1, max_size=2)
        assert pool is not None
        exits.push_async_callback(pool.close)
        return Stack(built, target, pool, policy_dir, dev_secrets)

    try:
        yield loop, loop.run(start())
    finally:
        loop.run(exits.aclose())
        loop.close()


# --- the scenario ----------------------------------------------------------------------


@dataclass(frozen=True)
class Execute:
    subject: str
    kind: str  # pause | resume | budget
    scope: str
    target: str
    minutes: int | None  # pause: None = indefinite
    skip_denied: bool


@dataclass(frozen=True)
class Rollback:
    subject: str
    pick: int  # which earlier completed action (modulo)
    skip_denied: bool
    skip_superseded: bool


@dataclass(frozen=True)
class Move:
    agent: str
    department: str


Step = Execute | Rollback | Move


@dataclass(frozen=True)
class Scenario:
    lines: tuple[str, ...]  # p and g lines; {ws} stands for the workspace id
    agents: tuple[tuple[str, str], ...]  # (agent, department)
    steps: tuple[Step, ...]


_p_line = st.builds(
    lambda role, glob, action, effect: f"p, {role}, *, {glob}, {action}, {effect}",
    st.sampled_from(ROLES),
    st.sampled_from(GLOBS),
    st.sampled_from(ACTIONS),
    st.sampled_from(["allow", "allow", "deny"]),
)
_deny_line = st.builds(
    lambda role, glob, action: f"p, {role}, *, {glob}, {action}, deny",
    st.sampled_from(("r1", "r1", "r2", "r3")),
    st.sampled_from(GLOBS[5:]),
    st.sampled_from(ACTIONS[:2]),
)
_binding = st.builds(
    lambda user, role: f"g, {user}, {role}, {{ws}}",
    st.sampled_from(USERS[:2]),
    st.sampled_from(ROLES),
)
_inherit = st.sampled_from(["g, r2, r1, *", "g, r3, r2, *", ""])


_subjects = st.sampled_from(("u1", "u1", "u2", "u3"))


def _target(scope: str, draw: st.DrawFn) -> str:
    if scope == "fleet":
        return ""
    return draw(st.sampled_from(DEPARTMENTS if scope == "department" else AGENTS))


@st.composite
def _execute(draw: st.DrawFn) -> Execute:
    scope = draw(st.sampled_from(["department", "department", "fleet", "agent"]))
    return Execute(
        subject=draw(_subjects),
        kind=draw(st.sampled_from(["pause", "pause", "resume", "budget"])),
        scope=scope,
        target=_target(scope, draw),
        minutes=draw(st.sampled_from([None, 30, 600])),
        skip_denied=draw(st.booleans()),
    )


_rollback = st.builds(Rollback, _subjects, st.integers(0, 7), st.booleans(), st.booleans())
_move = st.builds(Move, st.sampled_from(AGENTS), st.sampled_from(DEPARTMENTS))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    lines = [
        # r1 may do everything, except what the deny lines take away; u1 always holds it,
        # u2 maybe some role, u3 none.
        "p, r1, *, fleet, actions:*, allow",
        "p, r1, *, fleet/**, actions:*, allow",
        *draw(st.lists(_p_line, min_size=1, max_size=6)),
        *draw(st.lists(_deny_line, min_size=1, max_size=3)),
        "g, u1, r1, {ws}",
        *draw(st.lists(_binding, max_size=2)),
        draw(_inherit),
    ]
    agents = tuple((a, draw(st.sampled_from(DEPARTMENTS))) for a in AGENTS)
    steps = draw(
        st.lists(
            st.one_of(_execute(), _execute(), _execute(), _rollback, _move), min_size=3, max_size=10
        )
    )
    return Scenario(tuple(line for line in lines if line), agents, tuple(steps))


# --- running it --------------------------------------------------------------------------


def _path(department: str | None, agent: str | None = None) -> str:
    if department is None:
        return "fleet"
    if agent is None:
        return f"fleet/departments/{department}"
    return f"fleet/departments/{department}/agents/{agent}"


def _reference(policy_dir: Path) -> Any:
    """Plain pycasbin from the files, with the ``*`` workspace binding the model needs."""
    enforcer = casbin.Enforcer(str(policy_dir / "model.conf"), str(policy_dir / "policy.csv"))
    enforcer.add_named_domain_matching_func("g", lambda asked, bound: bound in ("*", asked))
    return enforcer


State = tuple[dict[str, tuple[str, str, datetime | None]], dict[tuple[str, str], Any]]


async def _state(pool: asyncpg.Pool, ws: uuid.UUID) -> State:
    agents = await pool.fetch(
        "SELECT agent_id, department_id, status, paused_until FROM agents WHERE workspace_id = $1",
        ws,
    )
    budgets = await pool.fetch(
        "SELECT scope, target_id, monthly_limit_cents FROM budgets WHERE workspace_id = $1", ws
    )
    return (
        {a["agent_id"]: (a["department_id"], a["status"], a["paused_until"]) for a in agents},
        {(b["scope"], b["target_id"]): b["monthly_limit_cents"] for b in budgets},
    )


def _params(step: Execute) -> ActionParams:
    if step.kind == "pause":
        if step.minutes is None:
            return PauseAgent(indefinite=True)
        return PauseAgent(duration_minutes=step.minutes)
    if step.kind == "resume":
        return ResumeAgent()
    return SetBudget(monthly_limit_cents=100 + len(step.target))


async def _run(stack: Stack, scenario: Scenario) -> None:
    ws = uuid.uuid4()
    text = "\n".join(line.replace("{ws}", str(ws)) for line in scenario.lines) + "\n"
    (stack.policy_dir / "policy.csv").write_text(text)
    assert await stack.policy.reloader.reload(), stack.policy.reloader.state.last_reload_error
    plain = _reference(stack.policy_dir)
    async with stack.pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"p-{ws}")
        await conn.executemany(
            "INSERT INTO departments (workspace_id, department_id, name) VALUES ($1, $2, $2)",
            [(ws, d) for d in DEPARTMENTS],
        )
        await conn.executemany(
            "INSERT INTO agents (workspace_id, agent_id, department_id) VALUES ($1, $2, $3)",
            [(ws, a, d) for a, d in scenario.agents],
        )
    completed: list[Any] = []  # completed non-rollback actions, for Rollback steps
    for index, step in enumerate(scenario.steps):
        before = await _state(stack.pool, ws)
        if isinstance(step, Move):
            await stack.pool.execute(
                "UPDATE agents SET department_id = $3 WHERE workspace_id = $1 AND agent_id = $2",
                ws,
                step.agent,
                step.department,
            )
            after = await _state(stack.pool, ws)
            assert {a: v[1:] for a, v in before[0].items()} == {
                a: v[1:] for a, v in after[0].items()
            }
            continue
        action = await _act(stack, ws, step, completed)
        after = await _state(stack.pool, ws)
        await _check_step(stack.pool, plain, ws, step, action, before, after, f"step {index}")
        if action is not None and action.action_type != "rollback":
            completed.append(action)


async def _act(stack: Stack, ws: uuid.UUID, step: Step, completed: list[Any]) -> Any:
    config = ClientConfig(
        target=stack.target,
        token=stack.secrets.user_token(step.subject),  # type: ignore[union-attr]
        retry=RetryPolicy(max_attempts=1),
        default_deadline=30,
    )
    async with AsyncActionsClient(config) as client:
        try:
            if isinstance(step, Execute):
                return await client.execute(
                    workspace_id=str(ws),
                    scope=step.scope,  # type: ignore[arg-type]
                    target_id=step.target,
                    reason="property",
                    params=_params(step),
                    skip_denied=step.skip_denied,
                )
            if isinstance(step, Rollback) and completed:
                original = completed[step.pick % len(completed)]
                return await client.rollback(
                    workspace_id=str(ws),
                    action_id=original.action_id,
                    reason="property",
                    skip_denied=step.skip_denied,
                    skip_superseded=step.skip_superseded,
                )
        except FleetwardError as err:
            # Refused by the policy, or for the state of things; never anything else.
            if err.code.name not in ("PERMISSION_DENIED", "FAILED_PRECONDITION", "NOT_FOUND"):
                raise
    return None


async def _check_step(
    pool: asyncpg.Pool,
    plain: Any,
    ws: uuid.UUID,
    step: Step,
    action: Any,
    before: State,
    after: State,
    where: str,
) -> None:
    changed_agents = {a for a in before[0] if before[0][a][1:] != after[0][a][1:]}
    changed_budgets = {b for b in {*before[1], *after[1]} if before[1].get(b) != after[1].get(b)}
    if action is None:
        assert not changed_agents, f"{where}: {step} failed yet changed {changed_agents}"
        assert not changed_budgets, f"{where}: {step} failed yet changed {changed_budgets}"
        return
    subject = action.actor.subject
    targets = {
        (r["target_kind"], r["target_key"])
        for r in await pool.fetch(
            "SELECT target_kind, target_key FROM action_targets WHERE action_id = $1",
            uuid.UUID(action.action_id),
        )
    }
    if action.action_type == "rollback":
        original = await pool.fetchrow(
            "SELECT action_type, scope, target_id FROM action_audit_log WHERE action_id = $1",
            uuid.UUID(action.rollback_of_action_id),
        )
        assert original is not None
        permission = UNDO[original["action_type"]]
        own = ("actions:rollback", original["scope"], original["target_id"])
    else:
        permission = f"actions:{action.action_type}"
        scope = {1: "fleet", 2: "department", 3: "agent"}[action.scope]
        own = (permission, scope, action.target_id)

    def allowed(resource: str, perm: str) -> bool:
        return bool(plain.enforce(subject, str(ws), resource, perm))

    own_perm, own_scope, own_target = own
    own_path = _own_path(own_scope, own_target, before)
    assert allowed(own_path, own_perm), f"{where}: {subject} lacks {own_perm} on {own_path}"
    for agent in changed_agents:
        assert ("agent", agent) in targets, f"{where}: {agent} changed outside the action"
        path = _path(before[0][agent][0], agent)
        assert allowed(path, permission), (
            f"{where}: {subject} changed {agent} ({path}) without {permission}: {step}"
        )
    for scope, target in changed_budgets:
        assert ("budget", f"{scope}:{target}") in targets
        department = before[0][target][0] if scope == "agent" else target
        path = _path(None if scope == "fleet" else department, target if scope == "agent" else None)
        assert allowed(path, permission), f"{where}: budget {path} without {permission}"


def _own_path(scope: str, target: str, before: State) -> str:
    if scope == "fleet":
        return "fleet"
    if scope == "department":
        return _path(target)
    return _path(before[0][target][0], target)


_EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@_EXAMPLES
@given(scenario=scenarios())
def test_every_change_was_allowed_on_its_own_path(
    stack: tuple[Loop, Stack], scenario: Scenario
) -> None:
    loop, services = stack
    loop.run(_run(services, scenario))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(scenario=scenarios())
def test_four_hundred_scenarios_keep_every_change_allowed(
    stack: tuple[Loop, Stack], scenario: Scenario
) -> None:
    loop, services = stack
    loop.run(_run(services, scenario))
