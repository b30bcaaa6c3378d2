"""The ``fleetward`` console script's common mistakes end with the next step, naming flags.

Against the real services: the server's own message is still printed (escaped), a field
violation is shown under its flag, and the last line (``hint: …``) says what to do next.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from fleetward.client.cli import hints
from fleetward.client.errors import FieldViolation, FleetwardError, PreconditionViolation

from services.common.tokens import mint_service_token
from tests.client.cli_runner import EnvFor, Run, fleetward
from tests.client.test_cli import ESCAPES, PAUSE
from tests.conftest import NewWorkspace, Secrets, Workspace
from tests.servers import running_action_server, running_policy_server, write_test_policy

WORKSPACE_FLAG = "or name another workspace with --workspace (FLEETWARD_WORKSPACE)"
REASON_HINT = (
    'hint: say why in 3 to 1000 characters, 3 of them visible: --reason "...", '
    "and run the command again"
)


def last_line(run: Run) -> str:
    """The last line on stderr: the hint, when there is one."""
    return run.stderr.rstrip("\n").splitlines()[-1]


async def test_an_unknown_agent_names_where_to_find_agents(env_for: EnvFor, ws: Workspace) -> None:
    for args in (
        ("execute", "pause_agent", "--agent", "nope-1", "--reason", "no such agent", "--yes"),
        ("agents", "get", "nope-1"),
    ):
        run = await fleetward(*args, env=env_for("bob", ws))
        assert run.code == 5, run.stderr
        assert "error: NOT_FOUND NOT_FOUND: agent 'nope-1' not found" in run.stderr
        assert last_line(run) == (
            f"hint: workspace {ws.id} has no agent 'nope-1': find its id with "
            f"`fleetward agents list`, {WORKSPACE_FLAG}"
        )


async def test_an_unknown_department_or_action_names_where_to_look(
    env_for: EnvFor, ws: Workspace
) -> None:
    department = await fleetward(
        "execute", "resume_agent", "--department", "nope", "--reason", "no such", "--yes",
        env=env_for("bob", ws),
    )  # fmt: skip
    assert department.code == 5, department.stderr
    assert last_line(department) == (
        f"hint: workspace {ws.id} has no department 'nope': `fleetward agents list` shows "
        f"each agent's department, {WORKSPACE_FLAG}"
    )
    missing = str(uuid.uuid4())
    action = await fleetward("actions", "get", missing, env=env_for("bob", ws))
    assert action.code == 5, action.stderr
    assert last_line(action) == (
        f"hint: workspace {ws.id} has no action '{missing}': find its id with "
        f"`fleetward actions list`, {WORKSPACE_FLAG}"
    )


@pytest.mark.parametrize("reason", ["", "x", "   ", "\u3164\u3164\u3164"])
async def test_a_missing_or_short_reason_names_the_flag(
    env_for: EnvFor, ws: Workspace, reason: str
) -> None:
    run = await fleetward(*PAUSE, "--reason", reason, "--yes", env=env_for("bob", ws))
    assert run.code == 2, run.stderr
    # The server's own words first, then the violation under the flag, then the next step.
    assert "error: INVALID_ARGUMENT INVALID_ARGUMENT: invalid request: reason: " in run.stderr
    assert "\n  --reason: required: at most 1000 characters" in run.stderr
    assert "\n  reason:" not in run.stderr
    assert last_line(run) == REASON_HINT


async def test_several_bad_flags_are_named_together(env_for: EnvFor, ws: Workspace) -> None:
    run = await fleetward(
        "execute", "pause_agent", "--agent", "eng-code-1", "--minutes", "0", "--reason", "x",
        "--yes", env=env_for("bob", ws),
    )  # fmt: skip
    assert run.code == 2, run.stderr
    assert "\n  --minutes: must be 1..10080 minutes" in run.stderr
    assert last_line(run) == (
        "hint: correct --minutes; say why in 3 to 1000 characters, 3 of them visible: "
        '--reason "...", and run the command again'
    )


async def test_a_rollback_without_a_reason_names_the_flag(env_for: EnvFor, ws: Workspace) -> None:
    run = await fleetward(
        "rollback", str(uuid.uuid4()), "--reason", "  ", "--yes", env=env_for("bob", ws)
    )
    assert run.code == 2, run.stderr
    assert last_line(run) == REASON_HINT


async def test_a_reason_with_escapes_is_refused_escaped_and_hinted(
    env_for: EnvFor, ws: Workspace
) -> None:
    run = await fleetward(*PAUSE, "--reason", f"ok{ESCAPES}", "--yes", env=env_for("bob", ws))
    assert run.code == 2, run.stderr
    assert "\x1b" not in run.stderr
    assert "\r" not in run.stderr
    assert last_line(run) == REASON_HINT


async def test_an_expired_token_says_how_to_get_a_fresh_one(
    env_for: EnvFor, ws: Workspace, dev_secrets: Secrets
) -> None:
    expired = dev_secrets.user_token("bob", ttl_s=-60)
    run = await fleetward("actions", "list", env={**env_for("bob", ws), "FLEETWARD_TOKEN": expired})
    assert run.code == 3, run.stderr
    assert "error: UNAUTHENTICATED UNAUTHENTICATED: token expired" in run.stderr
    hint = last_line(run)
    assert hint.startswith("hint: the token expired at ")
    assert hint.endswith(
        ": get a fresh one and set FLEETWARD_TOKEN or pass --token "
        "(in dev: export FLEETWARD_TOKEN=$(make token SUB=bob))"
    )


async def test_no_token_or_a_refused_one_says_where_a_token_goes(
    env_for: EnvFor, ws: Workspace
) -> None:
    fresh = "set FLEETWARD_TOKEN or pass --token (in dev: export FLEETWARD_TOKEN=$(make token SUB="
    env = env_for("bob", ws)
    del env["FLEETWARD_TOKEN"]
    missing = await fleetward("agents", "list", env=env)
    assert missing.code == 3, missing.stderr
    assert last_line(missing) == f"hint: no token was sent: {fresh}<user>))"
    garbage = await fleetward("agents", "list", env={**env, "FLEETWARD_TOKEN": "not-a-jwt"})
    assert garbage.code == 3, garbage.stderr
    assert last_line(garbage) == (
        f"hint: the service refused the token: get a fresh one and {fresh}<user>))"
    )


async def test_an_expired_service_token_names_the_policy_variable(
    env_for: EnvFor, ws: Workspace, dev_secrets: Secrets
) -> None:
    expired = mint_service_token(dev_secrets.service_jwt_secret, "cli-tests", ttl_s=-60)
    run = await fleetward(
        "policy", "info", env={**env_for("bob", ws), "FLEETWARD_POLICY_TOKEN": expired}
    )
    assert run.code == 3, run.stderr
    assert last_line(run).endswith(
        "set FLEETWARD_POLICY_TOKEN or pass --token "
        "(in dev: export FLEETWARD_POLICY_TOKEN=$(make token SUB=svc:cli-tests))"
    )


async def test_a_superseded_rollback_names_the_later_action_and_the_flag(
    env_for: EnvFor, ws: Workspace
) -> None:
    env = env_for("bob", ws)
    pause = await fleetward(
        "execute", "pause_agent", "--department", "support", "--reason", "incident", "--yes",
        "--json", env=env,
    )  # fmt: skip
    assert pause.code == 0, pause.stderr
    resume = await fleetward(
        "execute", "resume_agent", "--agent", "sup-chat-1", "--reason", "needed", "--yes",
        "--json", env=env,
    )  # fmt: skip
    later = resume.json()["action_id"]
    original = pause.json()["action_id"]
    refused = await fleetward("rollback", original, "--reason", "over", "--yes", env=env)
    assert refused.code == 6, refused.stderr
    assert "use skip_superseded to roll back the rest" in refused.stderr  # the server's words
    assert last_line(refused) == (
        f"hint: {later} changed some of its targets since (see `fleetward actions get {later}`): "
        "to roll back the rest, run it again with --skip-superseded"
    )
    shown = await fleetward("actions", "get", later, env=env)  # the hint's commands work
    assert shown.code == 0, shown.stderr
    rest = await fleetward(
        "rollback", original, "--reason", "over", "--yes", "--skip-superseded", env=env
    )
    assert rest.code == 0, rest.stderr


async def test_a_denied_viewer_is_pointed_at_can_i(env_for: EnvFor, ws: Workspace) -> None:
    run = await fleetward(*PAUSE, "--reason", "viewer tries", "--yes", env=env_for("carol", ws))
    assert run.code == 4, run.stderr
    assert "required_permission = actions:pause_agent" in run.stderr
    assert last_line(run) == (
        "hint: you lack actions:pause_agent: see why with "
        "`fleetward can-i pause_agent --agent eng-code-1`"
    )
    asked = await fleetward(
        "can-i", "pause_agent", "--agent", "eng-code-1", env=env_for("carol", ws)
    )
    assert asked.code == 1, asked.stderr
    assert asked.stdout.startswith("no: ")


async def test_someone_without_a_role_is_told_so(env_for: EnvFor, ws: Workspace) -> None:
    run = await fleetward("actions", "list", env=env_for("mallory", ws))
    assert run.code == 4, run.stderr
    assert last_line(run) == (
        f"hint: you hold no role in workspace {ws.id} (actions:read is needed): ask its "
        f"administrators for one, {WORKSPACE_FLAG}"
    )


GUARD = (
    "p, guarded, *, fleet/departments/**, actions:pause_agent, allow",
    "p, guarded, *, fleet/departments/*/agents/*-3, actions:pause_agent, deny",
    "g, guarded, viewer, *",
    "g, gus, guarded, *",
)


@pytest.fixture(scope="module")
async def guarded_target(
    tmp_path_factory: pytest.TempPathFactory, database_dsn: str, dev_secrets: Secrets
) -> AsyncIterator[str]:
    """An action service whose policy lets gus pause every agent but the ``*-3`` ones."""
    policy_dir: Path = write_test_policy(tmp_path_factory.mktemp("hint-policies"), GUARD)
    async with (
        running_policy_server(policy_dir, dev_secrets) as policy,
        running_action_server(database_dsn, policy, dev_secrets) as target,
    ):
        yield target


async def test_agents_denied_inside_a_target_suggest_skip_denied(
    guarded_target: str, new_workspace: NewWorkspace, dev_secrets: Secrets
) -> None:
    ws = await new_workspace()
    env = {
        "FLEETWARD_TARGET": guarded_target,
        "FLEETWARD_TOKEN": dev_secrets.user_token("gus"),
        "FLEETWARD_WORKSPACE": str(ws.id),
    }
    pause = ("execute", "pause_agent", "--department", "support", "--reason", "incident", "--yes")
    run = await fleetward(*pause, env=env)
    assert run.code == 4, run.stderr
    assert "denied_agent_ids = sup-chat-3" in run.stderr
    assert last_line(run) == (
        "hint: you lack actions:pause_agent: see why with "
        "`fleetward can-i pause_agent --department support`, "
        "or act on the agents you may change with --skip-denied"
    )
    skipped = await fleetward(*pause, "--skip-denied", env=env)
    assert skipped.code == 0, skipped.stderr


def _invocation(*argv: str, token: str = "") -> hints.Invocation:
    from fleetward.client.cli.parser import build_parser

    args: argparse.Namespace = build_parser().parse_args(argv)
    return hints.Invocation(args, "ws-1", token, "FLEETWARD_TOKEN")


def test_fields_map_to_the_flags_of_their_command() -> None:
    execute = _invocation(
        "execute", "set_budget", "--department", "d", "--cents", "1", "--reason", "r"
    )
    assert hints.flag_for("reason", execute) == "--reason"
    assert hints.flag_for("target_id", execute) == "--department"
    assert hints.flag_for("set_budget.monthly_limit_cents", execute) == "--cents"
    assert hints.flag_for("workspace_id", execute) == "--workspace"
    assert hints.flag_for("params", execute) is None
    listing = _invocation("actions", "list")
    assert hints.flag_for("target_id", listing) == "--target"
    assert hints.flag_for("actor_subject", listing) == "--actor"
    assert hints.flag_for("reason", listing) is None
    can_i = _invocation("can-i", "read", "--fleet")
    assert hints.flag_for("targets[0].scope", can_i) == "--fleet"


def test_every_string_from_the_error_is_escaped_in_a_hint() -> None:
    """A hint is one line whatever the server or the token say."""
    invocation = _invocation("rollback", str(uuid.uuid4()), "--reason", "r")
    superseded = FleetwardError(
        "superseded",
        code=grpc.StatusCode.FAILED_PRECONDITION,
        reason="SUPERSEDED",
        precondition_violations=[PreconditionViolation("SUPERSEDED", f"a{ESCAPES}", "x")],
    )
    not_found = FleetwardError(
        "nf", code=grpc.StatusCode.NOT_FOUND, metadata={"kind": "agent", "id": f"b{ESCAPES}\n"}
    )
    denied = FleetwardError(
        "no",
        code=grpc.StatusCode.PERMISSION_DENIED,
        reason="INSUFFICIENT_PERMISSIONS",
        metadata={"required_permission": f"actions:x{ESCAPES}", "user_role": "viewer"},
    )
    for error in (superseded, not_found, denied):
        text = hints.hint(error, invocation)
        assert text is not None
        assert "\x1b" not in text
        assert "\r" not in text
        assert "\n" not in text


def test_a_token_subject_that_is_not_plain_is_not_suggested() -> None:
    import jwt

    token = jwt.encode({"sub": "bob; rm -rf /", "exp": int(time.time()) - 60}, "k" * 32)
    invocation = _invocation("agents", "list", token=token)
    text = hints.hint(FleetwardError("expired", code=grpc.StatusCode.UNAUTHENTICATED), invocation)
    assert text is not None
    assert "SUB=<user>" in text
    assert "rm -rf" not in text


def test_other_errors_have_no_hint() -> None:
    invocation = _invocation("agents", "list")
    for error in (
        FleetwardError("x", code=grpc.StatusCode.UNAVAILABLE),
        FleetwardError("x", code=grpc.StatusCode.FAILED_PRECONDITION, reason="ALREADY_IN_STATE"),
        FleetwardError("x", code=grpc.StatusCode.PERMISSION_DENIED, reason="CALLER_NOT_ALLOWED"),
        FleetwardError(
            "x",
            code=grpc.StatusCode.INVALID_ARGUMENT,
            field_violations=[FieldViolation("page_token", "malformed page token")],
        ),
    ):
        assert hints.hint(error, invocation) is None
