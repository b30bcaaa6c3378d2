"""``make run``'s place on the machine: its ports, its pid file, ``make stop``, ``make reset``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from services.dev.secrets import DATA_DIR

PID_FILE = "run.pid"
# Where the pid file goes instead (tests run their own `make run` beside a developer's).
PID_FILE_VARIABLE = "FLEETWARD_DEV_PID_FILE"
# What `make reset` removes: the embedded database and the checkpoints of its chains.
# The dev secrets and the checkpoint signing key stay (printed tokens keep working).
RESET_PATHS = ("pg", "checkpoints")


def wanted_ports(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(variable, host:port)`` of every port ``make run``'s processes will listen on."""
    ports = [
        ("FLEETWARD_POLICY_ADDR", env["FLEETWARD_POLICY_ADDR"]),
        ("FLEETWARD_ACTIONS_ADDR", env["FLEETWARD_ACTIONS_ADDR"]),
        ("FLEETWARD_CONSOLE_ADDR", env["FLEETWARD_CONSOLE_ADDR"]),
    ]
    metrics = env.get("FLEETWARD_METRICS_PORT")
    host = env.get("FLEETWARD_METRICS_ADDR") or "127.0.0.1"
    if metrics is None:  # each service's default
        ports += [
            ("FLEETWARD_METRICS_PORT (action service, default)", f"{host}:9464"),
            ("FLEETWARD_METRICS_PORT (policy service, default)", f"{host}:9465"),
        ]
    return ports


def port_taken(address: str) -> bool:
    """Whether something already listens on ``host:port`` (port 0 never is)."""
    host, _, port = address.rpartition(":")
    if int(port) == 0:
        return False
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR so a closed server's TIME_WAIT does not count, but no SO_REUSEPORT:
        # a live listener makes this bind fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))  # noqa: S104 - a probe
        except OSError:
            return True
    return False


def refuse_taken_ports(env: Mapping[str, str]) -> None:
    """Exit naming each taken port and the variable that moves it (before anything
    starts, so nobody else's server can answer our readiness checks)."""
    taken = [(var, addr) for var, addr in wanted_ports(env) if port_taken(addr)]
    if not taken:
        return
    lines = [f"  {addr} is in use: set {var.split(' ')[0]} to another port" for var, addr in taken]
    raise SystemExit(
        "make run cannot start: its ports are taken (another `make run`? `make stop` ends it):\n"
        + "\n".join(lines)
    )


def pid_path(data_dir: Path = DATA_DIR) -> Path:
    """``$FLEETWARD_DEV_PID_FILE``, else ``data_dir/run.pid``."""
    return Path(os.environ.get(PID_FILE_VARIABLE) or data_dir / PID_FILE)


@contextlib.contextmanager
def pid_file(data_dir: Path = DATA_DIR) -> Iterator[None]:
    """Record this process in the pid file for ``make stop`` while it runs."""
    path = pid_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def _running_pid(data_dir: Path) -> int | None:
    """The pid in the pid file when that process is still a ``make run``."""
    try:
        pid = int(pid_path(data_dir).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid if b"services.dev run" in cmdline else None


def stop(data_dir: Path = DATA_DIR, timeout_s: float = 60.0) -> int:
    """``make stop``: SIGTERM the running ``make run`` and wait until it has cleaned up."""
    pid = _running_pid(data_dir)
    if pid is None:
        print("make run is not running here")
        return 0
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if _running_pid(data_dir) != pid:
            print(f"stopped make run (pid {pid})")
            return 0
        time.sleep(0.2)
    print(f"make run (pid {pid}) did not stop within {timeout_s:.0f}s", flush=True)
    return 1


def reset(env: Mapping[str, str], data_dir: Path = DATA_DIR) -> int:
    """``make reset``: stop ``make run`` and delete the embedded demo database and its
    checkpoints, so the next ``make run`` starts from the demo data again."""
    if env.get("DATABASE_URL"):
        print(
            "make reset deletes the embedded database under .data/; with DATABASE_URL set, "
            "drop and recreate that database yourself (make run migrates and seeds it)"
        )
        return 2
    if stop(data_dir) != 0:
        return 1
    removed = []
    for name in RESET_PATHS:
        for path in sorted(data_dir.glob(f"{name}*")):
            shutil.rmtree(path)
            removed.append(str(path))
    print("removed " + (", ".join(removed) if removed else "nothing (already fresh)"))
    return 0
