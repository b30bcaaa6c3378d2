"""The distribution's public surface: pinned __all__, generated sync code, typed examples."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fleetward.client
from fleetward.client import errors

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "python"
PACKAGE = CLIENT / "src" / "fleetward" / "client"

PUBLIC_API = [
    "Aborted",
    "ActionParams",
    "ActionResult",
    "ActionsClient",
    "AgentChange",
    "AlreadyExists",
    "AsyncActionsClient",
    "AsyncPolicyClient",
    "Cancelled",
    "ClientConfig",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "FleetwardError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PauseAgent",
    "PermissionDenied",
    "PolicyClient",
    "PreconditionViolation",
    "ResourceExhausted",
    "RestartAgent",
    "ResumeAgent",
    "RetryPolicy",
    "Scope",
    "ScopeLike",
    "SetBudget",
    "SkippedTarget",
    "TlsConfig",
    "TokenProvider",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "action_result",
]


def test_public_api_is_pinned() -> None:
    assert fleetward.client.__all__ == PUBLIC_API
    for name in PUBLIC_API:
        assert hasattr(fleetward.client, name), name


def test_every_error_is_a_fleetward_error_and_never_a_grpc_one() -> None:
    import grpc

    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, errors.FleetwardError)
            assert not issubclass(value, grpc.RpcError)


# The optional extra ``fleetward-client[tracing]``, imported (when installed) by one module.
OPTIONAL_IMPORTS = {PACKAGE / "_tracing.py": {"opentelemetry"}}


def test_client_imports_only_runtime_dependencies() -> None:
    runtime = {"fleetward", "grpc", "google", "grpc_status", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    for path in PACKAGE.rglob("*.py"):
        allowed = runtime | OPTIONAL_IMPORTS.get(path, set())
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in stdlib, f"{path}: imports {name}"


def test_py_typed_marker_ships() -> None:
    assert (CLIENT / "src" / "fleetward" / "py.typed").exists()


def test_sync_clients_are_generated_from_the_async_ones() -> None:
    result = subprocess.run(
        [sys.executable, str(CLIENT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_examples_pass_mypy_strict() -> None:
    examples = sorted(str(p) for p in (CLIENT / "examples").glob("*.py"))
    assert len(examples) >= 2
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mypy"), "--strict", *examples],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
