"""deploy/: every port, probe, command and variable the Dockerfile and the Kubernetes
manifests name exists in the code (an image cannot be built here, so this is the check)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml

from services.actions.settings import ActionSettings
from services.console.app import build_app
from services.console.settings import ConsoleSettings
from services.policy.settings import PolicySettings
from tests.foundation.conftest import PYTHON, REPO
from tests.foundation.test_configuration_doc import names_read

DEPLOY = REPO / "deploy"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
DOCUMENTS = [
    d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "fleetward.yaml").read_text()) if d
]


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


# What the code listens on by default, per process.
DEFAULT_PORTS = {
    "actions": {_port(ActionSettings.listen_addr), ActionSettings.metrics_port},
    "policy": {_port(PolicySettings.listen_addr), PolicySettings.metrics_port},
    "console": {_port(ConsoleSettings.listen_addr)},
}


def containers(*, init: bool = True) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in DOCUMENTS:
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + (
            pod.get("initContainers", []) if init else []
        ):
            yield doc, container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}


def _process(container: dict[str, Any]) -> str | None:
    command = container.get("command", [])
    if command[:2] == ["python", "-m"]:
        return str(command[2]).removeprefix("services.")
    return None


def test_every_command_is_a_real_subcommand() -> None:
    commands = [c["command"] for _, c in containers() if _process(c)]
    commands.append(["python", "-m", "services.actions", "serve"])  # the image's CMD
    assert '["python", "-m", "services.actions", "serve"]' in DOCKERFILE
    for command in commands:
        module, sub = command[2], command[3]
        shown = subprocess.run(
            [PYTHON, "-m", module, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert re.search(rf"\b{sub}\b", shown), command


def test_every_variable_named_is_one_the_code_reads() -> None:
    read = set(names_read())
    named = {name for _, c in containers() for name in _env(c)}
    named |= set(re.findall(r"\b(FLEETWARD_[A-Z0-9_]+|DATABASE_URL)=", DOCKERFILE))
    assert named - read == set()


def test_ports_and_probes_match_what_each_process_listens_on() -> None:
    for doc, container in containers(init=False):
        process = _process(container)
        assert process is not None, container["name"]
        service = process.split(".")[0]
        env = _env(container)
        ports = {p["containerPort"] for p in container.get("ports", [])}
        assert ports <= DEFAULT_PORTS[service], container["name"]
        for name, value in env.items():
            if name.endswith("_ADDR") and ":" in value:
                assert _port(value) in ports, (container["name"], name)
            if name == "FLEETWARD_METRICS_PORT":
                assert int(value) in ports, container["name"]
        probes = ("readinessProbe", "livenessProbe") if doc["kind"] == "Deployment" else ()
        for kind in probes:
            probe = container[kind]
            if "grpc" in probe:
                assert probe["grpc"]["port"] == _port(DEFAULT_LISTEN[service])
            else:
                assert probe["httpGet"]["port"] in ports
                paths = {getattr(r, "path", "") for r in build_app(ConsoleSettings()).routes}
                assert probe["httpGet"]["path"] in paths


DEFAULT_LISTEN = {
    "actions": ActionSettings.listen_addr,
    "policy": PolicySettings.listen_addr,
    "console": ConsoleSettings.listen_addr,
}


def test_services_point_at_ports_their_pods_serve_and_targets_name_them() -> None:
    services = {d["metadata"]["name"]: d for d in DOCUMENTS if d["kind"] == "Service"}
    for service in services.values():
        selector = service["spec"]["selector"]
        pods = [
            c
            for d, c in containers()
            if d["kind"] == "Deployment" and d["spec"]["selector"]["matchLabels"] == selector
        ]
        assert pods, service["metadata"]["name"]
        served = {p["containerPort"] for c in pods for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= served
    for _, container in containers():
        for name in ("FLEETWARD_TARGET", "FLEETWARD_POLICY_TARGET"):
            value = _env(container).get(name)
            if value:
                host, _, port = value.rpartition(":")
                assert host in services, value
                assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}


def test_the_dockerfile_exposes_and_checks_the_default_ports() -> None:
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", DOCKERFILE, re.M)[1].split()}  # type: ignore[index]
    assert exposed == set().union(*DEFAULT_PORTS.values())
    health = re.search(r'"services\.common\.healthcheck", "127\.0\.0\.1:(\d+)"', DOCKERFILE)
    assert health is not None
    assert int(health[1]) == _port(ActionSettings.listen_addr)
    for copied in re.findall(r"^COPY (?!--from)(?:--chown\S+ )?(\S+) ", DOCKERFILE, re.M):
        assert (REPO / copied).exists(), copied
