"""``make run`` (``python -m services.dev run``): migrate, seed, serve, grpcurl lines, READY.

Run against this module's own database and on free ports; the grpcurl lines it prints
are executed as printed.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from services.actions.checkpoints.signing import create_signing_key
from services.common.tokens import UserTokenVerifier, mint_user_token
from services.dev import lifecycle
from tests.foundation.conftest import PYTHON, REPO, clean_env, free_port

READY_DEADLINE_S = 90.0
JWT_SECRET = "run-test-user-secret-" + "u" * 24
SERVICE_SECRET = "run-test-service-secret-" + "s" * 24


def _pump(stream: Iterator[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def run_env(scratch: Path, dsn: str, role_password: str, **extra: str) -> dict[str, str]:
    """``make run``'s environment for a test: its own database, ports, secrets,
    checkpoints and pid file, nothing in the checkout's .data/."""
    if not (scratch / "checkpoint-key.pem").exists():
        create_signing_key(scratch / "checkpoint-key.pem")
    return clean_env(
        {
            "DATABASE_URL": dsn,
            "FLEETWARD_ACTIONS_ADDR": f"127.0.0.1:{free_port()}",
            "FLEETWARD_POLICY_ADDR": f"127.0.0.1:{free_port()}",
            "FLEETWARD_CONSOLE_ADDR": f"127.0.0.1:{free_port()}",
            "FLEETWARD_METRICS_PORT": "0",
            "FLEETWARD_POLICY_WATCH": "0",
            "FLEETWARD_LOG_LEVEL": "WARNING",
            # Given secrets: the run must not create .data/ secrets in the checkout.
            "FLEETWARD_JWT_SECRET": JWT_SECRET,
            "FLEETWARD_SERVICE_JWT_SECRET": SERVICE_SECRET,
            # ... nor checkpoints, nor a pid file; the roles keep the suite's password.
            "FLEETWARD_CHECKPOINT_DIR": str(scratch / "checkpoints"),
            "FLEETWARD_CHECKPOINT_KEY_FILE": str(scratch / "checkpoint-key.pem"),
            "FLEETWARD_DEV_PID_FILE": str(scratch / "run.pid"),
            "FLEETWARD_DEV_DATABASE_PASSWORD": role_password,
            **extra,
        }
    )


@contextlib.contextmanager
def started(
    env: dict[str, str], errors: Path, command: list[str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``make run`` (or ``command``) started with ``env``; yields it and what it printed up
    to READY; SIGTERM and wait afterwards."""
    with errors.open("w") as err:
        proc = subprocess.Popen(
            command or [PYTHON, "-m", "services.dev", "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while "READY" not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no READY within {READY_DEADLINE_S:.0f}s:\n{errors.read_text()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"make run exited with {proc.wait()}:\n{errors.read_text()}")
            seen.append(line)
        yield proc, seen
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def run_output(
    isolated_dsn: str, role_password: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Everything ``make run`` printed up to and including READY, while it keeps running."""
    scratch = tmp_path_factory.mktemp("make-run")
    env = run_env(scratch, isolated_dsn, role_password)
    with started(env, scratch / "stderr.log") as (_, seen):
        yield seen


def _grpcurl_list_lines(output: list[str]) -> list[list[str]]:
    return [
        shlex.split(line)
        for line in output
        if "grpcurl" in line and line.rstrip().endswith(" list")
    ]


def test_make_run_prints_the_demo_workspace_id_then_ready(run_output: list[str]) -> None:
    assert "workspace id (acme): ac3e0000-0000-4000-8000-000000000001" in run_output
    assert run_output[-1] == "READY"


def test_make_run_prints_tokens_for_bob_and_carol(run_output: list[str]) -> None:
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in run_output
        if line.startswith("export ")
    )
    verifier = UserTokenVerifier(secret=JWT_SECRET)

    assert verifier.verify(exports["BOB"].strip("'")).subject == "bob"
    assert verifier.verify(exports["CAROL"].strip("'")).subject == "carol"
    assert "SVC" in exports
    for name in ("BOB", "CAROL", "SVC"):  # pasted into shells and notes: an hour each
        claims = jwt.decode(exports[name].strip("'"), options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 3600


def test_the_printed_grpcurl_list_lines_show_both_services(run_output: list[str]) -> None:
    commands = _grpcurl_list_lines(run_output)
    assert len(commands) == 2

    listed: set[str] = set()
    for command in commands:
        assert Path(command[0]).name == "grpcurl"
        proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        assert proc.returncode == 0, proc.stderr
        listed.update(proc.stdout.split())

    assert {"fleetward.actions.v1.ActionService", "fleetward.policy.v1.PolicyService"} <= listed


def _paste(run_output: list[str], marker: str) -> subprocess.CompletedProcess[str]:
    """Paste the export lines and the one grpcurl line containing ``marker`` into bash."""
    exports = [line for line in run_output if line.startswith("export ")]
    (line,) = [line for line in run_output if "grpcurl" in line and marker in line]
    return subprocess.run(
        ["bash", "-c", "\n".join([*exports, line])],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_printed_execute_line_pauses_an_agent_for_bob(run_output: list[str]) -> None:
    proc = _paste(run_output, '"request_id":"demo-1"')

    assert proc.returncode == 0, proc.stderr
    action = json.loads(proc.stdout)
    assert action["status"] == "ACTION_STATUS_COMPLETED"
    assert action["actor"]["subject"] == "bob"


def test_the_printed_execute_line_for_carol_shows_the_decoded_denial(
    run_output: list[str],
) -> None:
    proc = _paste(run_output, '"request_id":"demo-2"')

    assert proc.returncode != 0
    status = json.loads(proc.stderr)
    assert status["code"] == 7  # PERMISSION_DENIED
    # The ErrorInfo detail is decoded, which needs its type from server reflection.
    (info,) = [d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert (info["domain"], info["reason"]) == ("fleetward", "INSUFFICIENT_PERMISSIONS")
    assert info["metadata"]["required_permission"] == "actions:pause_agent"


def test_the_printed_list_actions_line_answers(run_output: list[str]) -> None:
    proc = _paste(run_output, "ListActions")

    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_the_printed_check_access_line_names_the_agent_bob_may_not_pause(
    run_output: list[str],
) -> None:
    proc = _paste(run_output, "CheckAccess")

    assert proc.returncode == 0, proc.stderr
    [engineering] = json.loads(proc.stdout)["results"]
    [pause] = [d for d in engineering["denied"] if d["permission"] == "actions:pause_agent"]
    assert pause["code"] == "DENIAL_CODE_AGENTS_DENIED"
    assert pause["deniedAgentIds"] == ["eng-review-1"]
    assert "actions:resume_agent" in engineering["allowed"]


def test_the_printed_check_lines_allow_bob_and_deny_carol(run_output: list[str]) -> None:
    bob = _paste(run_output, '"subject":"bob"')
    carol = _paste(run_output, '"subject":"carol"')

    assert bob.returncode == 0, bob.stderr
    assert carol.returncode == 0, carol.stderr
    assert json.loads(bob.stdout)["allowed"] is True
    assert json.loads(carol.stdout).get("allowed", False) is False


def test_the_services_run_as_the_runtime_role_and_the_audit_line_verifies(
    run_output: list[str],
) -> None:
    (line,) = [line for line in run_output if "audit verify" in line and "DATABASE_URL=" in line]
    assert "://fleetward_app:" in line, "the services and the auditor use the runtime role"
    _paste(run_output, '"request_id":"demo-1"')  # at least one event (an idempotent repeat)
    proc = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, check=False, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all chains intact, rows and targets cross-checked" in proc.stdout
    assert "checkpoints: " in proc.stdout
    assert "workspace(s) covered" in proc.stdout


def test_make_run_serves_the_console_and_prints_its_url_before_ready(
    run_output: list[str],
) -> None:
    console = [line for line in run_output if line.startswith("console: ")]
    assert len(console) == 1
    assert run_output.index(console[0]) == len(run_output) - 2  # the line before READY
    url = console[0].removeprefix("console: ")
    # Secrets were given, so this is not the dev setup: no sign-in page, and the user's
    # token is expected from an auth proxy's Authorization header.
    with pytest.raises(urllib.error.HTTPError) as no_signin:
        urllib.request.urlopen(f"{url}/signin", timeout=10)  # noqa: S310 - our own URL
    assert no_signin.value.code == 404
    fleet = f"{url}/w/ac3e0000-0000-4000-8000-000000000001/fleet"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(fleet, timeout=10)  # noqa: S310
    assert anonymous.value.code == 401
    bob = mint_user_token(JWT_SECRET, "bob", ttl_s=600)
    request = urllib.request.Request(  # noqa: S310 - our own URL
        fleet, headers={"Authorization": f"Bearer {bob}"}
    )
    with urllib.request.urlopen(request, timeout=10) as page:  # noqa: S310
        html = page.read().decode()
    assert "eng-review-1" in html
    assert 'id="who">bob<' in html


def test_make_run_refuses_taken_ports_naming_the_variable(
    isolated_dsn: str, role_password: str, tmp_path: Path
) -> None:
    env = run_env(tmp_path, isolated_dsn, role_password)
    host, _, port = env["FLEETWARD_ACTIONS_ADDR"].rpartition(":")
    with socket.socket() as squatter:  # someone else's server on the action service's port
        squatter.bind((host, int(port)))
        squatter.listen()
        proc = subprocess.run(
            [PYTHON, "-m", "services.dev", "run"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode != 0
    assert "READY" not in proc.stdout
    assert f"{host}:{port} is in use: set FLEETWARD_ACTIONS_ADDR to another port" in proc.stderr
    assert "make stop" in proc.stderr


def _ports_free(env: dict[str, str]) -> bool:
    return not any(
        lifecycle.port_taken(env[var])
        for var in ("FLEETWARD_ACTIONS_ADDR", "FLEETWARD_POLICY_ADDR", "FLEETWARD_CONSOLE_ADDR")
    )


def test_make_stop_ends_make_run_and_its_services(
    isolated_dsn: str, role_password: str, tmp_path: Path
) -> None:
    env = run_env(tmp_path, isolated_dsn, role_password)
    with started(env, tmp_path / "stderr.log") as (proc, _):
        assert (tmp_path / "run.pid").read_text().strip() == str(proc.pid)
        stop = subprocess.run(
            [PYTHON, "-m", "services.dev", "stop"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert stop.returncode == 0, stop.stderr
        assert f"stopped make run (pid {proc.pid})" in stop.stdout
        assert proc.wait(timeout=5) == 0
    assert not (tmp_path / "run.pid").exists()
    assert _ports_free(env)


def test_make_run_stops_when_the_process_that_started_it_is_killed(
    isolated_dsn: str, role_password: str, tmp_path: Path
) -> None:
    """`kill -INT` to a backgrounded make reaches nobody; SIGKILL to a parent neither."""
    env = run_env(tmp_path, isolated_dsn, role_password)
    shell = ["sh", "-c", f"{PYTHON} -m services.dev run & wait"]
    with started(env, tmp_path / "stderr.log", shell) as (parent, _):
        run_pid = int((tmp_path / "run.pid").read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 60
        while Path(f"/proc/{run_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{run_pid}").exists()
    assert _ports_free(env)


def test_the_printed_exports_drive_the_cli_and_the_admin_commands(
    run_output: list[str],
) -> None:
    exports = [line for line in run_output if line.startswith("export ")]
    cli = next(line for line in exports if "FLEETWARD_TARGET=" in line)
    database = next(line for line in exports if line.startswith("export DATABASE_URL="))
    fleetward = str(Path(PYTHON).parent / "fleetward")
    script = "\n".join(
        [
            cli,
            database,
            f"{fleetward} --json agents list",
            f"{PYTHON} -m services.actions audit verify",
        ]
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "eng-review-1" in proc.stdout
    assert "all chains intact" in proc.stdout
