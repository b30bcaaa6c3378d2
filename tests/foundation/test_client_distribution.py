"""``fleetward-client`` installs on its own into a fresh venv and its generated code imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

from tests.foundation.conftest import REPO, clean_env

# Run from the venv's own directory with no PYTHONPATH: only what pip installed is importable.
_PROBE = """
import importlib.util, json
import fleetward
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc
from fleetward.client import ClientConfig
from fleetward.client._sync.transport import open_channel
channel = open_channel(ClientConfig(target="127.0.0.1:9"))
channel.close()
print(json.dumps({
    "fleetward": fleetward.__file__,
    "actions": actions_pb2.DESCRIPTOR.services_by_name["ActionService"].full_name,
    "policy": policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    "stub": hasattr(actions_pb2_grpc, "ActionServiceStub"),
    "services_importable": importlib.util.find_spec("services") is not None,
    "asyncpg_installed": importlib.util.find_spec("asyncpg") is not None,
    "opentelemetry_installed": importlib.util.find_spec("opentelemetry") is not None,
    "channel": type(channel).__module__,
}))
"""


def test_client_distribution_installs_alone_into_a_fresh_venv(tmp_path: Path) -> None:
    # pip builds in the source tree; a copy keeps build/ and *.egg-info out of the checkout.
    source = tmp_path / "fleetward-client"
    shutil.copytree(
        REPO / "clients" / "python",
        source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = clean_env()

    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt", source],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    probe = subprocess.run(
        [python, "-c", _PROBE],
        cwd=env_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    package = Path(found["fleetward"]).parent
    assert package.is_relative_to(env_dir)
    assert (package / "py.typed").is_file()
    assert (package / "actions" / "v1" / "actions_pb2.pyi").is_file()
    assert found["actions"] == "fleetward.actions.v1.ActionService"
    assert found["policy"] == "fleetward.policy.v1.PolicyService"
    assert found["stub"] is True
    assert found["services_importable"] is False
    assert found["asyncpg_installed"] is False  # runtime deps only: grpcio, protobuf, status
    # Without the tracing extra the client opens grpc's own channel, no interceptor.
    assert found["opentelemetry_installed"] is False
    assert found["channel"] == "grpc._channel"
