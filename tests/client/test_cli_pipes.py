"""``fleetward … | head -1``: a reader that leaves ends every command quietly, exit 141.

The real console script against the real services, its stdout a real pipe: read by a
process that takes one line and exits, or already closed before the first write (so the
write fails for certain, whatever the timing).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import asyncpg
import pytest

from tests.client.cli_runner import FLEETWARD, EnvFor, Run, fleetward
from tests.client.test_cli import PAUSE
from tests.conftest import NewWorkspace, Workspace

BROKEN_PIPE = 141
# Reads one line, echoes it and exits: ``head -n 1`` without depending on coreutils.
ONE_LINE = "import sys; sys.stdout.write(sys.stdin.readline())"


def _environment(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWARD_")}
    return {**full, **env}


async def _into_closed_pipe(*args: str, env: dict[str, str], stderr_too: bool = False) -> Run:
    """``fleetward *args`` writing into a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = await asyncio.create_subprocess_exec(
            str(FLEETWARD),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write,
            stderr=write if stderr_too else asyncio.subprocess.PIPE,
            env=_environment(env),
        )
    finally:
        os.close(write)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, "", (err or b"").decode())


async def _into_one_line_reader(*args: str, env: dict[str, str]) -> tuple[Run, str]:
    """``fleetward *args | (read one line, exit)``: the run and the line the reader got."""
    read, write = os.pipe()
    try:
        reader = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ONE_LINE, stdin=read, stdout=asyncio.subprocess.PIPE
        )
        proc = await asyncio.create_subprocess_exec(
            str(FLEETWARD),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write,
            stderr=asyncio.subprocess.PIPE,
            env=_environment(env),
        )
    finally:
        os.close(read)
        os.close(write)
    try:
        line, _ = await asyncio.wait_for(reader.communicate(), timeout=30)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Run(proc.returncode, "", err.decode()), line.decode()


async def _pause(env: dict[str, str]) -> str:
    """Pause eng-code-1 through the CLI (a history to print); the action id."""
    run = await fleetward(*PAUSE, "--reason", "before the pipe", "--yes", "--json", env=env)
    assert run.code == 0, run.stderr
    action_id: str = run.json()["action_id"]
    return action_id


async def test_watch_json_into_head_ends_quietly_even_between_events(
    env_for: EnvFor, ws: Workspace
) -> None:
    """The history (3 events) fits in the pipe before the reader leaves; no event follows,
    so no write fails: the watch notices the reader is gone and ends all the same."""
    env = env_for("alice", ws)
    done = await _pause(env)
    run, line = await _into_one_line_reader("watch", "--json", env=env)
    assert json.loads(line)["action"]["action_id"] == done
    assert run.stderr == ""
    assert run.code == BROKEN_PIPE


async def test_agents_list_larger_than_the_pipe_into_head_ends_quietly(
    env_for: EnvFor, new_workspace: NewWorkspace
) -> None:
    """More output than a pipe holds: the write blocks until the reader leaves, then fails."""
    big = await new_workspace(agents_per_department=1000)  # over 400 KB of JSON
    run, line = await _into_one_line_reader(
        "agents", "list", "--limit", "2000", "--json", env=env_for("bob", big)
    )
    assert line == "[\n"
    assert run.stderr == ""
    assert run.code == BROKEN_PIPE


COMMANDS = {
    "watch --json": ("watch", "--json"),
    "watch": ("watch",),
    "actions list": ("actions", "list"),
    "actions list --json": ("actions", "list", "--json"),
    "actions get": ("actions", "get", "{action}"),
    "actions types": ("actions", "types"),
    "agents list": ("agents", "list"),
    "agents get --json": ("agents", "get", "eng-code-1", "--json"),
    "can-i": ("can-i", "pause_agent", "--agent", "eng-code-1"),
    "execute --dry-run": (*PAUSE, "--reason", "only a preview", "--dry-run"),
    "policy info": ("policy", "info"),
}


@pytest.mark.parametrize("args", list(COMMANDS.values()), ids=list(COMMANDS))
async def test_every_printing_command_exits_141_without_a_traceback(
    env_for: EnvFor, ws: Workspace, args: tuple[str, ...]
) -> None:
    env = env_for("alice", ws)
    action = await _pause(env)
    run = await _into_closed_pipe(*(a.format(action=action) for a in args), env=env)
    assert run.stderr == ""  # no traceback, no "Exception ignored … BrokenPipeError"
    assert run.code == BROKEN_PIPE


async def test_an_action_whose_output_nobody_reads_is_still_done_once(
    env_for: EnvFor, ws: Workspace, pool: asyncpg.Pool
) -> None:
    """141 says the output was lost, not the action: it ran, once."""
    run = await _into_closed_pipe(
        *PAUSE, "--reason", "unread", "--yes", "--json", env=env_for("bob", ws)
    )
    assert "eng-code-1" in run.stderr  # the preview (stderr with --json), and nothing else:
    assert "Traceback" not in run.stderr
    assert "BrokenPipeError" not in run.stderr
    assert run.code == BROKEN_PIPE
    rows = await pool.fetch(
        "SELECT status FROM action_audit_log WHERE workspace_id = $1 AND reason = 'unread'", ws.id
    )
    assert [r["status"] for r in rows] == ["completed"]


async def test_help_into_a_closed_pipe_is_quiet(env_for: EnvFor, ws: Workspace) -> None:
    """argparse prints ``--help`` itself and ignores a failed write: exit 0, no traceback."""
    run = await _into_closed_pipe("--help", env=env_for("bob", ws))
    assert run.stderr == ""
    assert run.code == 0


async def test_an_error_into_a_closed_pipe_exits_141_too(env_for: EnvFor, ws: Workspace) -> None:
    """``2>&1 | head -1`` with nothing read: the error report itself cannot be written."""
    run = await _into_closed_pipe(
        "agents", "get", "no-such-agent", env=env_for("bob", ws), stderr_too=True
    )
    assert run.code == BROKEN_PIPE
