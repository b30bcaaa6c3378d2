"""``make run``: embedded PostgreSQL (unless DATABASE_URL), migrate, seed, both services, READY."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from urllib.parse import urlsplit

from services.actions.checkpoints.signing import create_signing_key
from services.common import healthcheck
from services.common.tokens import mint_service_token
from services.dev import roles
from services.dev.database import embedded_postgres
from services.dev.lifecycle import pid_file, refuse_taken_ports
from services.dev.secrets import DATA_DIR, apply_to_env, database_password
from services.dev.token import DEV_TOKEN_TTL_S, dev_user_token

DEMO_WORKSPACE_ID = "ac3e0000-0000-4000-8000-000000000001"
_PY = sys.executable


@contextlib.contextmanager
def database_url(env: MutableMapping[str, str]) -> Iterator[str]:
    """Use DATABASE_URL when set, else an embedded server for the duration."""
    if env.get("DATABASE_URL"):
        yield env["DATABASE_URL"]
        return
    with embedded_postgres() as dsn:
        env["DATABASE_URL"] = dsn
        yield dsn


def use_dev_checkpoints(
    env: MutableMapping[str, str], *, embedded: bool, data_dir: Path = DATA_DIR
) -> None:
    """Checkpoints under ``.data/checkpoints/`` (the embedded database's; another database
    gets a directory of its own, so two databases' chains never meet), signed with a key
    generated once into ``.data/checkpoint-key.pem`` (0600). Left alone when the
    environment configures checkpoints itself."""
    if env.get("FLEETWARD_CHECKPOINT_DIR") or env.get("FLEETWARD_CHECKPOINT_KEY_FILE"):
        return
    key = data_dir / "checkpoint-key.pem"
    if not key.exists():
        create_signing_key(key)
    directory = data_dir / "checkpoints"
    if not embedded:
        where = urlsplit(env["DATABASE_URL"])
        name = f"{where.hostname or 'socket'}-{where.port or 5432}{where.path}"
        directory = data_dir / ("checkpoints-" + re.sub(r"[^A-Za-z0-9._-]+", "-", name))
    env["FLEETWARD_CHECKPOINT_DIR"] = str(directory)
    env["FLEETWARD_CHECKPOINT_KEY_FILE"] = str(key)


def use_two_roles(env: MutableMapping[str, str], admin_dsn: str, *, embedded: bool) -> None:
    """Point ``migrate`` at the owner role and the services at the runtime role.

    The embedded server gets its own database owned by ``fleetward_owner``; a
    ``DATABASE_URL`` the developer set stays the migrating owner and the services run as
    ``fleetward_app``. Left alone when FLEETWARD_MIGRATE_DATABASE_URL is set (the roles
    are the operator's), or when the URL's role may not create roles (then everything runs
    as that role, and a warning says so).
    """
    if env.get("FLEETWARD_MIGRATE_DATABASE_URL"):
        return
    password = database_password()
    if embedded:
        asyncio.run(roles.ensure_roles(admin_dsn, password))
        database = asyncio.run(roles.create_database(admin_dsn, roles.DEV_DATABASE, exist_ok=True))
        split = roles.split(database, password)
    elif asyncio.run(roles.can_create_roles(admin_dsn)):
        asyncio.run(roles.ensure_roles(admin_dsn, password))
        split = roles.split(admin_dsn, password, owner=None)
    else:
        print(
            "warning: DATABASE_URL's role may not create roles, so the services run as it "
            "(no least-privilege runtime role; see the README's Audit integrity section)",
            file=sys.stderr,
        )
        return
    env["FLEETWARD_MIGRATE_DATABASE_URL"] = split.migrate_dsn
    env["DATABASE_URL"] = split.runtime_dsn


def _wait_until(
    ready: Callable[[], bool], what: str, deadline_s: float, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Poll ``ready`` until it says yes; exit when a service dies or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"a service exited with code {proc.returncode}; see its log above")
        if ready():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not become ready within {deadline_s:.0f}s")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - our own URL
            return bool(reply.status == 200)
    except OSError:
        return False


def _pause_body(ws: str, request_id: str) -> str:
    """The Execute request that pauses eng-code-1 for 30 minutes, as grpcurl's ``-d``."""
    return (
        f'{{"workspace_id":"{ws}","scope":"SCOPE_AGENT","target_id":"eng-code-1",'
        f'"reason":"investigating cost spike","request_id":"{request_id}",'
        f'"pause_agent":{{"duration_minutes":30}}}}'
    )


def _check_body(ws: str, subject: str) -> str:
    """The policy Check of ``subject`` pausing eng-code-1 (explained), as grpcurl's ``-d``."""
    agent = "fleet/departments/engineering/agents/eng-code-1"
    return (
        f'{{"subject":"{subject}","workspace_id":"{ws}","action":"actions:pause_agent",'
        f'"resource":"{agent}","explain":true}}'
    )


def _audit_verify_line(env: MutableMapping[str, str]) -> str:
    """The command that verifies the audit trail (and the checkpoints, when configured)."""
    checkpoints = env.get("FLEETWARD_CHECKPOINT_DIR")
    return f"DATABASE_URL='{env['DATABASE_URL']}' {_PY} -m services.actions audit verify" + (
        f" --checkpoints {checkpoints}" if checkpoints else ""
    )


def _grpcurl_lines(env: MutableMapping[str, str], actions: str, policy: str) -> str:
    grpcurl = os.path.join(os.path.dirname(_PY), "grpcurl")
    bob, carol = dev_user_token(env, "bob"), dev_user_token(env, "carol")
    svc = mint_service_token(env["FLEETWARD_SERVICE_JWT_SECRET"], "debug", ttl_s=DEV_TOKEN_TTL_S)
    ws = DEMO_WORKSPACE_ID
    pause_bob, pause_carol = _pause_body(ws, "demo-1"), _pause_body(ws, "demo-2")
    check_bob, check_carol = _check_body(ws, "bob"), _check_body(ws, "carol")
    can_i = (
        f'{{"workspace_id":"{ws}","targets":[{{"scope":"SCOPE_DEPARTMENT",'
        f'"target_id":"engineering"}}]}}'
    )
    admin_dsn = env.get("FLEETWARD_MIGRATE_DATABASE_URL") or env["DATABASE_URL"]
    return "\n".join(
        [
            f"workspace id (acme): {ws}",
            "",
            "# paste into a shell: the fleetward CLI as bob, and the admin commands' database",
            "# (the owner role: audit verify, import-agents, create-workspace, migrate)",
            f"export FLEETWARD_TARGET={actions} FLEETWARD_WORKSPACE={ws} FLEETWARD_TOKEN='{bob}'",
            f"export DATABASE_URL='{admin_dsn}'",
            "",
            "# bob (operator) and carol (viewer), tokens valid 1 h (then: make token SUB=bob):",
            f"export BOB='{bob}'",
            f"export CAROL='{carol}'",
            f"export SVC='{svc}'",
            "",
            f"{grpcurl} -plaintext {actions} list",
            f"{grpcurl} -plaintext -H \"authorization: Bearer $BOB\" -d '{pause_bob}' "
            f"{actions} fleetward.actions.v1.ActionService/Execute",
            f'{grpcurl} -plaintext -format-error -H "authorization: Bearer $CAROL" '
            f"-d '{pause_carol}' "
            f"{actions} fleetward.actions.v1.ActionService/Execute",
            f'{grpcurl} -plaintext -H "authorization: Bearer $BOB" '
            f'-d \'{{"workspace_id":"{ws}"}}\' '
            f"{actions} fleetward.actions.v1.ActionService/ListActions",
            "# can bob pause the engineering department? (no: eng-review-1 is denied to him)",
            f"{grpcurl} -plaintext -H \"authorization: Bearer $BOB\" -d '{can_i}' "
            f"{actions} fleetward.actions.v1.ActionService/CheckAccess",
            f"{grpcurl} -plaintext {policy} list",
            f"{grpcurl} -plaintext -H \"authorization: Bearer $SVC\" -d '{check_bob}' "
            f"{policy} fleetward.policy.v1.PolicyService/Check",
            f"{grpcurl} -plaintext -H \"authorization: Bearer $SVC\" -d '{check_carol}' "
            f"{policy} fleetward.policy.v1.PolicyService/Check",
            "",
            "# the audit trail: every chain, every row and target, every signed checkpoint",
            _audit_verify_line(env),
        ]
    )


def _connect_target(address: str) -> str:
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", ""):  # noqa: S104 - only rewriting for the client side
        host = "127.0.0.1"
    return f"{host}:{port}"


def use_dev_console(env: MutableMapping[str, str], *, dev_secrets: bool) -> str:
    """The console's settings for ``make run``; returns its URL.

    The dev sign-in (demo users, a minted cookie) is on only when the user-token secret is
    the generated dev one: with a real identity provider the console expects its
    ``Authorization`` header from the auth proxy instead.
    """
    env.setdefault("FLEETWARD_CONSOLE_ADDR", "127.0.0.1:8080")
    env.setdefault("FLEETWARD_CONSOLE_WORKSPACE", DEMO_WORKSPACE_ID)
    env.setdefault("FLEETWARD_TARGET", _connect_target(env["FLEETWARD_ACTIONS_ADDR"]))
    if dev_secrets:
        env.setdefault("FLEETWARD_CONSOLE_AUTH", "dev")
    return "http://" + _connect_target(env["FLEETWARD_CONSOLE_ADDR"])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM during setup: the same cleanup as Ctrl-C


def main() -> int:
    """Run the whole local setup until SIGINT or SIGTERM (``make stop``), or until the
    process that started it goes away."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with pid_file():
            return _main()
    except KeyboardInterrupt:
        return 0


def _main() -> int:
    env: dict[str, str] = dict(os.environ)
    dev_secrets = not env.get("FLEETWARD_JWT_SECRET") and not env.get("FLEETWARD_JWT_JWKS_FILE")
    apply_to_env(env)
    env.setdefault("FLEETWARD_ACTIONS_ADDR", "127.0.0.1:50051")
    # The action service, and the svc:debug token printed below for grpcurl.
    env.setdefault("FLEETWARD_POLICY_ALLOWED_CALLERS", "svc:actions,svc:debug")
    env.setdefault("FLEETWARD_POLICY_ADDR", "127.0.0.1:50052")
    env.setdefault("FLEETWARD_POLICY_TARGET", _connect_target(env["FLEETWARD_POLICY_ADDR"]))
    actions = _connect_target(env["FLEETWARD_ACTIONS_ADDR"])
    policy = _connect_target(env["FLEETWARD_POLICY_ADDR"])
    console = use_dev_console(env, dev_secrets=dev_secrets)
    refuse_taken_ports(env)
    parent = os.getppid()
    procs: list[subprocess.Popen[bytes]] = []
    embedded = not env.get("DATABASE_URL")
    with database_url(env) as admin_dsn:
        try:
            use_dev_checkpoints(env, embedded=embedded)
            use_two_roles(env, admin_dsn, embedded=embedded)
            subprocess.run([_PY, "-m", "services.actions", "migrate"], env=env, check=True)
            subprocess.run([_PY, "-m", "services.actions", "seed-demo"], env=env, check=True)
            procs.append(subprocess.Popen([_PY, "-m", "services.policy", "serve"], env=env))
            procs.append(subprocess.Popen([_PY, "-m", "services.actions", "serve"], env=env))
            procs.append(subprocess.Popen([_PY, "-m", "services.console", "serve"], env=env))
            _wait_until(lambda: healthcheck.check(policy, timeout=1), policy, 60, procs)
            _wait_until(lambda: healthcheck.check(actions, timeout=1), actions, 60, procs)
            _wait_until(lambda: _http_ok(f"{console}/healthz"), console, 60, procs)
            if any(proc.poll() is not None for proc in procs):  # answered by someone else
                raise SystemExit("a service exited during start-up; see its log above")
            print(_grpcurl_lines(env, actions, policy), flush=True)
            print(f"console: {console}", flush=True)
            print("READY", flush=True)
            _block_until_signal_or_exit(procs, parent)
        except subprocess.CalledProcessError as exc:
            print(f"setup step failed: {' '.join(map(str, exc.cmd))}", file=sys.stderr)
            return 1
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


def _block_until_signal_or_exit(procs: list[subprocess.Popen[bytes]], parent: int) -> None:
    # Blocked only after the children started, so they keep their own signal handling.
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    while all(p.poll() is None for p in procs):
        if signal.sigtimedwait(signals, 1.0) is not None:
            return
        if os.getppid() != parent:
            # The parent (make, a shell, a supervisor) is gone, e.g. `kill -INT` to a
            # backgrounded make, which passes nothing on: stop rather than linger.
            print("the process that started make run is gone; stopping", file=sys.stderr)
            return
    print("a service exited; stopping", file=sys.stderr)
