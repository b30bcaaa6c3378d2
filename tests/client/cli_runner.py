"""Runs the real ``fleetward`` console script as a subprocess (without blocking the loop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLEETWARD = Path(sys.executable).parent / "fleetward"
# ``env_for("bob", ws)``: the FLEETWARD_* variables of a user in a workspace (a fixture).
EnvFor = Callable[..., dict[str, str]]


@dataclass(frozen=True)
class Run:
    """What one invocation printed and returned."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.stdout)


async def fleetward(*args: str, env: dict[str, str], tty_answer: str | None = None) -> Run:
    """Run ``fleetward *args``; with ``tty_answer``, stdin is a terminal that types it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWARD_")}
    full_env.update(env)
    master = slave = -1
    stdin: int = asyncio.subprocess.DEVNULL
    if tty_answer is not None:
        master, slave = pty.openpty()
        stdin = slave
    try:
        proc = await asyncio.create_subprocess_exec(
            str(FLEETWARD),
            *args,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
        )
        if tty_answer is not None:
            os.close(slave)
            slave = -1
            os.write(master, tty_answer.encode())
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        for fd in (master, slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())
