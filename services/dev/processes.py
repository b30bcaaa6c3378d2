"""Service processes for the tests and the bench: ``python -m services.<name> serve`` as a child.

The one implementation both use (tests/events/processes.py and the other process-level
tests, bench/procs.py), as services/dev/scratch.py is for their databases: start a
service in the repository with a clean environment (nothing inherited of FLEETWARD_*,
DATABASE_URL or PYTHONPATH) and its output appended to a log file, learn its port (given
beforehand, or read from its ``listening on port N`` line when it listens on port 0),
wait until it listens or its health answers SERVING, and stop it (SIGTERM, SIGKILL after
a grace period).

Every blocking call has an ``*_async`` form that runs it in a worker thread, so that a
test's event loop, and the in-process servers running in it, go on meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

from services.common import healthcheck

REPO = Path(__file__).resolve().parents[2]
# Never inherited by a child, besides every FLEETWARD_* variable: the caller says them.
NOT_INHERITED = ("DATABASE_URL", "PYTHONPATH")
LOCALHOST = "127.0.0.1"
_PORT_LINE = re.compile(r"listening on port (\d+)")
_POLL_S = 0.05
_LOG_TAIL_CHARS = 4000
# ``python -m MODULE serve`` on uvloop's event loop (the bench's ``--uvloop``; uvloop is
# not a dependency).
_UVLOOP = (
    "import asyncio, runpy, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "sys.argv = [sys.argv[1], 'serve']; runpy.run_module(sys.argv[0], run_name='__main__')"
)


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without FLEETWARD_*, DATABASE_URL and PYTHONPATH, plus
    ``extra`` (so a child sees only the settings its caller gives it)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FLEETWARD_") and name not in NOT_INHERITED
    }
    env.update(extra or {})
    return env


def serve_command(module: str, *, uvloop: bool = False) -> list[str]:
    """The command line of ``python -m MODULE serve`` (on uvloop's event loop if asked)."""
    if uvloop:
        return [sys.executable, "-c", _UVLOOP, module]
    return [sys.executable, "-m", module, "serve"]


class RunningService:
    """A started ``python -m MODULE serve`` child: its process, log file and target.

    Made by :meth:`start`. ``target`` (``host:port``) is the one given to :meth:`start`,
    or the one :meth:`wait_for_port` read from the log.
    """

    def __init__(
        self, name: str, popen: subprocess.Popen[bytes], log: Path, log_from: int, target: str
    ) -> None:
        self.name = name
        self.popen = popen
        self.log = log
        self.target = target
        self._log_from = log_from  # where this start's lines begin in a reused log

    @classmethod
    def start(
        cls,
        module: str,
        env: Mapping[str, str],
        log: Path,
        *,
        name: str | None = None,
        target: str = "",
        uvloop: bool = False,
    ) -> Self:
        """Start ``python -m MODULE serve`` in the repository with ``clean_env(env)``, its
        stdout and stderr appended to ``log``.

        Args:
            module: The service's module, e.g. ``services.policy``.
            env: Variables the child gets on top of the clean environment.
            log: The log file (appended to: a restarted service keeps one log).
            name: What errors call it (default: the module's last part).
            target: Its ``host:port`` when the caller chose the port (else ``""``, and
                :meth:`wait_for_port` learns it).
            uvloop: Run it on uvloop's event loop.
        """
        log_from = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            popen = subprocess.Popen(
                serve_command(module, uvloop=uvloop),
                cwd=REPO,
                env=clean_env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(name or module.rpartition(".")[2], popen, log, log_from, target)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code (negative: the signal that ended it), None while it runs."""
        return self.popen.poll()

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` (nothing once it has exited)."""
        self.popen.send_signal(sig)

    def log_text(self) -> str:
        """What this start wrote to the log so far."""
        with self.log.open("rb") as log:
            log.seek(self._log_from)
            return log.read().decode(errors="replace")

    def reported_port(self) -> int | None:
        """The port of its ``listening on port N`` log line, None before that line."""
        found = _PORT_LINE.search(self.log_text())
        return int(found.group(1)) if found else None

    def serving(self) -> bool:
        """Whether its overall health (``grpc.health.v1``) at ``target`` answers SERVING."""
        return healthcheck.check(self.target, timeout=1)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout_s: float) -> None:
        """Poll ``ready`` until it is true.

        Raises:
            RuntimeError: The process exited first, or ``timeout_s`` passed (with the end
                of its log).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.popen.poll()
            if code is not None:
                raise RuntimeError(f"{self.name} exited ({code}) before {what}{self._log_tail()}")
            if ready():
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name}: no {what} in {timeout_s:g} s{self._log_tail()}")
            time.sleep(_POLL_S)

    def wait_for_port(self, timeout_s: float = 60) -> int:
        """Until its log reports the port it listens on; sets ``target`` and returns it."""
        self.wait_until(lambda: self.reported_port() is not None, "listening port", timeout_s)
        port = self.reported_port()
        assert port is not None
        self.target = f"{LOCALHOST}:{port}"
        return port

    def wait_serving(self, timeout_s: float = 30) -> None:
        """Until its overall health at ``target`` answers SERVING."""
        self.wait_until(self.serving, "SERVING", timeout_s)

    def wait(self, timeout_s: float | None = None) -> int:
        """Until it exits; its exit code.

        Raises:
            TimeoutError: It still runs after ``timeout_s``.
        """
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"{self.name} still runs after {timeout_s:g} s") from exc

    def stop(self, grace_s: float = 20) -> int:
        """SIGTERM, and SIGKILL if it still runs after ``grace_s``; its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait()

    async def serving_async(self) -> bool:
        """:meth:`serving` in a worker thread."""
        return await asyncio.to_thread(self.serving)

    async def wait_for_port_async(self, timeout_s: float = 60) -> int:
        """:meth:`wait_for_port` in a worker thread."""
        return await asyncio.to_thread(self.wait_for_port, timeout_s)

    async def wait_serving_async(self, timeout_s: float = 30) -> None:
        """:meth:`wait_serving` in a worker thread."""
        await asyncio.to_thread(self.wait_serving, timeout_s)

    async def wait_async(self, timeout_s: float | None = None) -> int:
        """:meth:`wait` in a worker thread."""
        return await asyncio.to_thread(self.wait, timeout_s)

    async def stop_async(self, grace_s: float = 20) -> int:
        """:meth:`stop` in a worker thread."""
        return await asyncio.to_thread(self.stop, grace_s)

    def _log_tail(self) -> str:
        text = self.log_text()
        cut = "…" if len(text) > _LOG_TAIL_CHARS else ""
        return f"; {self.log}:\n{cut}{text[-_LOG_TAIL_CHARS:]}"
