"""``python -m services.common.healthcheck``: the container's health check against a real
server, and a closed port."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests.conftest import Secrets
from tests.foundation.conftest import PYTHON, REPO, free_port
from tests.servers import running_policy_server, write_test_policy


def probe(target: str) -> int:
    return subprocess.run(
        [PYTHON, "-m", "services.common.healthcheck", target, "--timeout", "2"],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


async def test_serving_is_0_and_nobody_there_is_1(tmp_path: Path, dev_secrets: Secrets) -> None:
    async with running_policy_server(write_test_policy(tmp_path), dev_secrets) as target:
        assert await asyncio.to_thread(probe, target) == 0
    assert await asyncio.to_thread(probe, f"127.0.0.1:{free_port()}") == 1
