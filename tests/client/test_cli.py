"""The ``fleetward`` console script against the real services: preview, confirm, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import uuid
from typing import Any

import asyncpg
import pytest

from tests.client.cli_runner import FLEETWARD, EnvFor, fleetward
from tests.conftest import Workspace


async def _actions(pool: asyncpg.Pool, ws: Workspace) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT action_id::text AS id, action_type, status FROM action_audit_log "
        "WHERE workspace_id = $1",
        ws.id,
    )


PAUSE = ("execute", "pause_agent", "--agent", "eng-code-1", "--minutes", "30")


async def test_execute_with_yes_prints_the_action_as_json(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    run = await fleetward(
        *PAUSE, "--reason", "cli pause", "--yes", "--json", env=env_for("bob", ws)
    )
    assert run.code == 0, run.stderr
    action = run.json()
    assert action["action_type"] == "pause_agent"
    assert action["status"] == "ACTION_STATUS_COMPLETED"
    assert "eng-code-1" in run.stderr  # the preview went to stderr, stdout is pure JSON
    assert [(r["id"], r["status"]) for r in await _actions(pool, ws)] == [
        (action["action_id"], "completed")
    ]


async def test_without_tty_or_yes_it_previews_and_refuses(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    run = await fleetward(
        "execute",
        "pause_agent",
        "--department",
        "support",
        "--reason",
        "no tty",
        env=env_for("bob", ws),
    )
    assert run.code == 2
    assert "--yes" in run.stderr
    for agent in ws.agents_in("support"):
        assert agent in run.stdout  # the preview: which agents would change
    assert "active" in run.stdout
    assert "paused" in run.stdout
    assert await _actions(pool, ws) == []


async def test_confirming_on_a_terminal_executes(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    run = await fleetward(*PAUSE, "--reason", "typed yes", env=env_for("bob", ws), tty_answer="y\n")
    assert run.code == 0, run.stderr
    assert "[y/N]" in run.stderr
    assert "completed" in run.stdout
    assert [r["status"] for r in await _actions(pool, ws)] == ["completed"]


async def test_declining_on_a_terminal_executes_nothing(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    run = await fleetward(*PAUSE, "--reason", "typed no", env=env_for("bob", ws), tty_answer="n\n")
    assert run.code == 8
    assert "nothing was executed" in run.stderr
    assert await _actions(pool, ws) == []


async def test_dry_run_prints_the_preview_and_writes_nothing(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    run = await fleetward(
        "execute",
        "set_budget",
        "--fleet",
        "--cents",
        "12345",
        "--reason",
        "preview only",
        "--dry-run",
        "--json",
        env=env_for("alice", ws),
    )
    assert run.code == 0, run.stderr
    assert run.json()["action_type"] == "set_budget"
    assert await _actions(pool, ws) == []


async def test_rollback_and_reads(env_for: EnvFor, ws: Workspace) -> None:
    env = env_for("alice", ws)
    done = await fleetward(*PAUSE, "--reason", "to undo", "--yes", "--json", env=env)
    action_id = done.json()["action_id"]

    undo = await fleetward("rollback", action_id, "--reason", "undo it", "--yes", "--json", env=env)
    assert undo.code == 0, undo.stderr
    assert undo.json()["rollback_of_action_id"] == action_id

    listed = await fleetward("actions", "list", "--type", "pause_agent", "--json", env=env)
    assert [(a["action_id"], a["status"]) for a in listed.json()] == [
        (action_id, "ACTION_STATUS_ROLLED_BACK")
    ]
    shown = await fleetward("actions", "get", action_id, env=env)
    assert shown.code == 0
    assert "rolled_back" in shown.stdout
    agents = await fleetward("agents", "list", "--department", "engineering", "--json", env=env)
    assert [a["agent_id"] for a in agents.json()] == ws.agents_in("engineering")
    agent = await fleetward("agents", "get", "eng-code-1", env=env)
    assert agent.code == 0
    assert "active" in agent.stdout
    types = await fleetward("actions", "types", env=env)
    assert types.code == 0
    assert "restart_agent" in types.stdout


async def test_policy_commands(env_for: EnvFor, ws: Workspace) -> None:
    env = env_for("alice", ws)
    check = await fleetward(
        "policy",
        "check",
        "--subject",
        "carol",
        "--action",
        "actions:pause_agent",
        "--resource",
        "fleet",
        "--json",
        env=env,
    )
    assert check.code == 0, check.stderr
    assert not check.json().get("allowed", False)
    info = await fleetward("policy", "info", env=env)
    assert info.code == 0, info.stderr
    assert "rules" in info.stdout


@pytest.mark.parametrize(
    ("subject", "args", "code"),
    [
        ("carol", (*PAUSE, "--reason", "viewer", "--yes"), 4),
        ("bob", ("actions", "get", str(uuid.uuid4())), 5),
        (
            "bob",
            ("execute", "resume_agent", "--agent", "eng-code-1", "--reason", "active", "--yes"),
            6,
        ),
        ("bob", (*PAUSE, "--reason", "x", "--yes"), 2),
        ("bob", ("execute", "pause_agent", "--reason", "no target"), 2),
    ],
    ids=["permission-denied", "not-found", "precondition", "invalid-argument", "usage"],
)
async def test_exit_codes_by_error_class(
    env_for: EnvFor, ws: Workspace, subject: str, args: tuple[str, ...], code: int
) -> None:
    run = await fleetward(*args, env=env_for(subject, ws))
    assert run.code == code, run.stderr


async def test_bad_token_exits_3_with_json_error(env_for: EnvFor, ws: Workspace) -> None:
    env = {**env_for("bob", ws), "FLEETWARD_TOKEN": "not-a-jwt"}
    run = await fleetward("actions", "types", "--json", env=env)
    assert run.code == 3
    assert '"reason": "UNAUTHENTICATED"' in run.stderr


async def test_unreachable_service_exits_7(env_for: EnvFor, ws: Workspace) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    env = {**env_for("bob", ws), "FLEETWARD_TARGET": f"127.0.0.1:{free}"}
    run = await fleetward("actions", "types", "--timeout", "1", env=env)
    assert run.code == 7
    assert "UNAVAILABLE" in run.stderr


async def test_watch_streams_ndjson_until_interrupted(env_for: EnvFor, ws: Workspace) -> None:
    env = env_for("alice", ws)
    done = await fleetward(*PAUSE, "--reason", "before the watch", "--yes", "--json", env=env)
    action_id = done.json()["action_id"]
    proc = await asyncio.create_subprocess_exec(
        str(FLEETWARD),
        "watch",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    try:
        events: list[dict[str, Any]] = []
        while not events or events[-1]["event_type"] != "action.completed":
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            events.append(json.loads(line))
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0  # Ctrl-C is how a watch ends
    assert [int(e["seq"]) for e in events] == list(range(1, len(events) + 1))
    assert {e["action"]["action_id"] for e in events} == {action_id}


ESCAPES = "\x1b[1A\x1b[2K\rstatus         completed"


async def test_stored_strings_with_escape_sequences_are_shown_escaped(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    # The server refuses control characters in a reason now, but rows stored before (or
    # written by anything else) are shown too: a terminal must never interpret them.
    action_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, target_id, "
        "action_params, reason, actor_user_id, actor_role, status, can_rollback, request_id, "
        "request_fingerprint, error_message) VALUES ($1, $2, 'pause_agent', 'agent', "
        "'eng-code-1', '{}', $3, 'carol', 'viewer', 'denied', false, 'esc-1', 'x', $4)",
        action_id,
        ws.id,
        f"routine{ESCAPES}",
        f"denied\n  user_role = admin{ESCAPES}",
    )
    for args in (("actions", "get", str(action_id)), ("actions", "list")):
        run = await fleetward(*args, env=env_for("bob", ws))
        assert run.code == 0, run.stderr
        assert "\x1b" not in run.stdout
        assert "\r" not in run.stdout
        assert "\\x1b[1A" in run.stdout or args[1] == "list"
    shown = await fleetward("actions", "get", str(action_id), env=env_for("bob", ws))
    status_lines = [line for line in shown.stdout.splitlines() if line.startswith("status")]
    assert [line.split() for line in status_lines] == [["status", "denied"]]  # the real one
    assert not any(line.startswith("  user_role") for line in shown.stdout.splitlines())


async def test_a_reason_with_control_characters_is_refused(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    run = await fleetward(*PAUSE, "--reason", f"routine{ESCAPES}", "--yes", env=env_for("bob", ws))
    assert run.code == 2, run.stderr  # INVALID_ARGUMENT
    assert "\x1b" not in run.stderr
    assert await _actions(pool, ws) == []
    tabs = await fleetward(
        *PAUSE, "--reason", "two\tlines\nare fine", "--yes", env=env_for("bob", ws)
    )
    assert tabs.code == 0, tabs.stderr


def test_strings_that_would_pass_for_something_else_are_escaped() -> None:
    """Beyond controls: spaces other than the plain one, blank fillers, private-use and
    unassigned code points; astral code points get an unambiguous \\U escape; the joiners
    that scripts and emoji need stay. A denial's text is one line, whatever it holds."""
    from fleetward.actions.v1 import actions_pb2
    from fleetward.client.cli.render import denial_text, visible

    assert visible("a\u00a0b\u3000c") == "a\\xa0b\\u3000c"
    assert visible("\u3164\u3164\u3164") == "\\u3164\\u3164\\u3164"
    assert visible("x\ue000y\U000e0001") == "x\\ue000y\\U000e0001"
    assert visible("\u0645\u06cc\u200c\u062e") == "\u0645\u06cc\u200c\u062e"
    assert visible("ok \U0001f469\u200d\U0001f4bb") == "ok \U0001f469\u200d\U0001f4bb"
    denial = actions_pb2.AccessDenial(reason="NO_ROLE\nyes", denied_agent_ids=["a\rb"])
    assert "\n" not in denial_text(denial)
    assert "\r" not in denial_text(denial)
