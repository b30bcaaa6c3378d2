"""Dev secrets and ``make token`` (``python -m services.dev token SUB``).

See docs/architecture.md §8.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from services.common.tokens import ServiceTokenVerifier, UserTokenVerifier
from services.dev.secrets import apply_to_env, load_or_create
from tests.foundation.conftest import PYTHON, clean_env

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
