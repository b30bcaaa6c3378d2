"""CheckAccess ("can I?") against the demo policy and data, through the real client and CLI.

It must answer by exactly Execute's rule: for every demo user, action type and scope,
CheckAccess allows a permission exactly when Execute's ``validate_only`` is not refused by
the policy.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import (
    ActionParams,
    ActionsClient,
    AsyncActionsClient,
    ClientConfig,
    InvalidArgument,
    NotFound,
    PauseAgent,
    PermissionDenied,
    RestartAgent,
    ResumeAgent,
    ScopeLike,
    SetBudget,
)
from fleetward.client.errors import FleetwardError

from services.actions.demo import DEMO_AGENTS, DEMO_WORKSPACE_ID, seed_demo
from tests.actions.helpers import counts
from tests.client.cli_runner import fleetward
from tests.conftest import Secrets, migrated_database
from tests.servers import POLICIES, running_action_server, running_policy_server

WS = str(DEMO_WORKSPACE_ID)
USERS = ("alice", "bob", "carol", "dana", "mallory")
PARAMS: dict[str, ActionParams] = {
    "pause_agent": PauseAgent(),
    "resume_agent": ResumeAgent(),
    "set_budget": SetBudget(monthly_limit_cents=100),
    "restart_agent": RestartAgent(),
}
TARGETS: tuple[tuple[ScopeLike, str], ...] = (
    ("agent", "eng-review-1"),
    ("agent", "sup-chat-1"),
    ("department", "engineering"),
    ("department", "support"),
    ("fleet", ""),
)


@dataclass(frozen=True)
class Demo:
    """The demo workspace behind the demo policy (``policies/``)."""

    target: str
    dsn: str
    secrets: Secrets

    def client(self, subject: str) -> AsyncActionsClient:
        """The async client as ``subject``."""
        token = self.secrets.user_token(subject)
        return AsyncActionsClient(ClientConfig(target=self.target, token=token))


@pytest.fixture(scope="module")
async def demo(server_dsn: str, role_password: str, dev_secrets: Secrets) -> AsyncIterator[Demo]:
    """A scratch database with the demo data, the demo policy and both services."""
    async with migrated_database(server_dsn, role_password) as database:
        dsn = database.runtime_dsn
        await seed_demo(dsn)
        async with (
            running_policy_server(POLICIES, dev_secrets) as policy,
            running_action_server(dsn, policy, dev_secrets, policy_timeout_ms=5000) as target,
        ):
            yield Demo(target, dsn, dev_secrets)


async def _outcome(client: AsyncActionsClient, action: str, scope: ScopeLike, target: str) -> str:
    """What Execute's validate_only says: allowed, denied (by the policy) or scope."""
    try:
        await client.execute(
            workspace_id=WS,
            scope=scope,
            target_id=target,
            reason="can I?",
            params=PARAMS[action],
            validate_only=True,
        )
    except PermissionDenied:
        return "denied"
    except InvalidArgument:
        return "scope"  # the action does not apply at this scope
    except FleetwardError:
        return "allowed"  # refused for the state of things (ALREADY_IN_STATE), not by policy
    return "allowed"


async def test_check_access_agrees_with_validate_only_for_every_role_action_and_scope(
    demo: Demo,
) -> None:
    for user in USERS:
        async with demo.client(user) as client:
            if user == "mallory":  # no role: may not even ask, and may do nothing
                with pytest.raises(PermissionDenied):
                    await client.check_access(workspace_id=WS, targets=TARGETS)
                for (scope, target), action in itertools.product(TARGETS, PARAMS):
                    assert await _outcome(client, action, scope, target) in ("denied", "scope")
                continue
            answer = await client.check_access(workspace_id=WS, targets=TARGETS)
            assert len(answer.results) == len(TARGETS)
            for (scope, target), access in zip(TARGETS, answer.results, strict=True):
                denied = {d.permission: d for d in access.denied}
                assert set(access.allowed) | set(denied) == {
                    "actions:read",
                    "actions:rollback",
                    *(f"actions:{a}" for a in PARAMS),
                }
                for action in PARAMS:
                    said = await _outcome(client, action, scope, target)
                    permission = f"actions:{action}"
                    if said == "allowed":
                        assert permission in access.allowed, (user, action, scope, target)
                    elif said == "scope":
                        assert (
                            denied[permission].code == actions_pb2.DENIAL_CODE_SCOPE_NOT_SUPPORTED
                        )
                    else:
                        assert permission in denied, (user, action, scope, target)


async def test_bob_is_told_which_agents_keep_him_from_pausing_engineering(demo: Demo) -> None:
    async with demo.client("bob") as client:
        answer = await client.check_access(workspace_id=WS, targets=TARGETS)
    by_target = {(t.scope, t.target_id): t for t in answer.results}
    assert list(answer.roles) == ["operator", "viewer"]
    engineering = by_target[(actions_pb2.SCOPE_DEPARTMENT, "engineering")]
    [pause] = [d for d in engineering.denied if d.permission == "actions:pause_agent"]
    assert pause.code == actions_pb2.DENIAL_CODE_AGENTS_DENIED
    assert (pause.denied_count, list(pause.denied_agent_ids)) == (1, ["eng-review-1"])
    assert "skip_denied" in pause.reason
    assert "actions:resume_agent" in engineering.allowed
    review = by_target[(actions_pb2.SCOPE_AGENT, "eng-review-1")]
    [pause] = [d for d in review.denied if d.permission == "actions:pause_agent"]
    assert pause.code == actions_pb2.DENIAL_CODE_EXPLICIT_DENY
    fleet = by_target[(actions_pb2.SCOPE_FLEET, "")]
    [budget] = [d for d in fleet.denied if d.permission == "actions:set_budget"]
    assert budget.code == actions_pb2.DENIAL_CODE_NOT_GRANTED
    assert budget.reason == "requires actions:set_budget; your roles: operator, viewer"
    support = by_target[(actions_pb2.SCOPE_DEPARTMENT, "support")]
    [restart] = [d for d in support.denied if d.permission == "actions:restart_agent"]
    assert restart.code == actions_pb2.DENIAL_CODE_SCOPE_NOT_SUPPORTED


async def test_an_outsider_cannot_tell_what_exists(demo: Demo) -> None:
    # A caller who may not read is refused alike for real and made-up targets (as Execute
    # and GetAgent refuse them), so asking reveals neither agents nor departments.
    async with demo.client("mallory") as client:
        refusals = []
        for target in (("agent", "eng-review-1"), ("agent", "no-such-agent"), ("fleet", "")):
            with pytest.raises(PermissionDenied) as err:
                await client.check_access(workspace_id=WS, targets=[target])
            refusals.append((err.value.message, dict(err.value.metadata)))
        assert refusals[0] == refusals[1] == refusals[2]
        assert refusals[0][1]["required_permission"] == "actions:read"
    async with demo.client("carol") as client:
        with pytest.raises(NotFound):
            await client.check_access(
                workspace_id=WS, targets=[("agent", "sup-chat-1"), ("agent", "no-such-agent")]
            )


async def test_check_access_writes_nothing_and_checks_its_input(demo: Demo) -> None:
    pool = await asyncpg.create_pool(demo.dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        before = await counts(pool, DEMO_WORKSPACE_ID)
        async with demo.client("bob") as client:
            every_agent: list[tuple[ScopeLike, str]] = [("agent", a) for a in DEMO_AGENTS]
            answer = await client.check_access(workspace_id=WS, targets=every_agent)
            assert len(answer.results) == len(DEMO_AGENTS)
            malformed: list[list[tuple[ScopeLike, str]]] = [
                [],
                [("agent", "")],
                [("fleet", "x")],
                [("agent", "A")],
                every_agent * 51,
            ]
            for bad in malformed:
                with pytest.raises(InvalidArgument):
                    await client.check_access(workspace_id=WS, targets=bad)
            with pytest.raises(InvalidArgument):
                await client.check_access(workspace_id="not-a-uuid", targets=[("fleet", "")])
            # One question asked 500 times cost 500 answers (a 202 KB reply to 8 KB).
            with pytest.raises(InvalidArgument) as err:
                await client.check_access(workspace_id=WS, targets=[("fleet", "")] * 500)
            repeats = {v.field: v.description for v in err.value.field_violations}
            assert repeats["targets[1]"] == "repeats targets[0]"
            assert repeats["…"] == "and 491 more violations"
        assert await counts(pool, DEMO_WORKSPACE_ID) == before
    finally:
        await pool.close()


async def test_the_sync_client_asks_too(demo: Demo) -> None:
    config = ClientConfig(target=demo.target, token=demo.secrets.user_token("dana"))

    def ask() -> actions_pb2.CheckAccessResponse:
        with ActionsClient(config) as client:
            return client.check_access(workspace_id=WS, targets=[("fleet", "")])

    answer = await asyncio.to_thread(ask)
    assert "actions:set_budget" in answer.results[0].allowed


async def test_fleetward_can_i_answers_yes_or_no_with_its_exit_code(demo: Demo) -> None:
    env = {
        "FLEETWARD_TARGET": demo.target,
        "FLEETWARD_TOKEN": demo.secrets.user_token("bob"),
        "FLEETWARD_WORKSPACE": WS,
    }
    no = await fleetward("can-i", "pause_agent", "--department", "engineering", env=env)
    assert no.code == 1
    assert no.stdout.startswith("no: ")
    assert "eng-review-1" in no.stdout
    yes = await fleetward("can-i", "actions:resume_agent", "--department", "engineering", env=env)
    assert (yes.code, yes.stdout.strip()) == (0, "yes")
    as_json = await fleetward("can-i", "set_budget", "--fleet", "--json", env=env)
    assert as_json.code == 1
    assert as_json.json()["allowed"] is False
    listed = await fleetward("can-i", "--list", "--agent", "eng-review-1", env=env)
    assert listed.code == 0
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert rows["actions:pause_agent"] == "no"
    assert rows["actions:resume_agent"] == "yes"
    usage = await fleetward("can-i", "--fleet", env=env)
    assert usage.code == 2
    unknown = await fleetward("can-i", "dance", "--fleet", env=env)
    assert unknown.code == 2


async def test_the_cli_refuses_the_department_pause_then_skip_denied_pauses_the_rest(
    demo: Demo,
) -> None:
    env = {
        "FLEETWARD_TARGET": demo.target,
        "FLEETWARD_TOKEN": demo.secrets.user_token("bob"),
        "FLEETWARD_WORKSPACE": WS,
    }
    pause = ("execute", "pause_agent", "--department", "engineering", "--reason", "cost spike")
    refused = await fleetward(*pause, "--yes", env=env)
    assert refused.code == 4
    assert "eng-review-1" in refused.stderr
    done = await fleetward(*pause, "--yes", "--skip-denied", env=env)
    assert done.code == 0, done.stderr
    assert "eng-review-1" in done.stdout
    assert "denied" in done.stdout
    async with demo.client("carol") as client:
        states = {
            a.agent_id: a.status
            async for a in client.list_agents(workspace_id=WS, department_id="engineering")
        }
    paused = {a for a, s in states.items() if s == actions_pb2.AGENT_STATUS_PAUSED}
    assert paused == {a for a, d in DEMO_AGENTS.items() if d == "engineering"} - {"eng-review-1"}
    # Put the demo back for the other tests of this module.
    async with demo.client("alice") as client:
        await client.execute(
            workspace_id=WS,
            scope="department",
            target_id="engineering",
            reason="reset",
            params=ResumeAgent(),
            request_id=str(uuid.uuid4()),
        )
