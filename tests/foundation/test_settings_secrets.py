"""Settings refuse what would weaken authentication: short or shared secrets, odd callers."""

from __future__ import annotations

import pytest

from services.actions.settings import ActionSettings
from services.common.settings import SettingsError
from services.policy.settings import PolicySettings

GOOD_USER = "u" * 32
GOOD_SERVICE = "s" * 32


def _actions(**env: str) -> ActionSettings:
    return ActionSettings.from_env({"DATABASE_URL": "postgresql://x/y", **env})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FLEETWARD_JWT_SECRET": "short", "FLEETWARD_SERVICE_JWT_SECRET": GOOD_SERVICE},
            "32 bytes",
        ),
        ({"FLEETWARD_JWT_SECRET": GOOD_USER, "FLEETWARD_SERVICE_JWT_SECRET": "x" * 31}, "32 bytes"),
        (
            {"FLEETWARD_JWT_SECRET": GOOD_USER, "FLEETWARD_SERVICE_JWT_SECRET": GOOD_USER},
            "must differ",
        ),
        ({"FLEETWARD_JWT_SECRET": GOOD_USER, "FLEETWARD_JWT_MAX_TTL": "0"}, "positive"),
    ],
)
def test_the_action_service_refuses_weak_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _actions(**env)
    assert message in str(refused.value)


def test_the_action_service_takes_issuer_and_maximum_lifetime() -> None:
    settings = _actions(
        FLEETWARD_JWT_SECRET=GOOD_USER,
        FLEETWARD_SERVICE_JWT_SECRET=GOOD_SERVICE,
        FLEETWARD_JWT_ISSUER="https://idp.example",
        FLEETWARD_JWT_MAX_TTL="3600",
    )
    assert (settings.jwt_issuer, settings.jwt_max_ttl_s) == ("https://idp.example", 3600)
    assert _actions(FLEETWARD_JWT_SECRET=GOOD_USER).jwt_max_ttl_s == 24 * 3600


def test_checkpoints_need_both_a_directory_and_a_key() -> None:
    with pytest.raises(SettingsError, match="set both FLEETWARD_CHECKPOINT_DIR"):
        _actions(FLEETWARD_JWT_SECRET=GOOD_USER, FLEETWARD_CHECKPOINT_DIR="/tmp/cp")
    with pytest.raises(SettingsError, match="set both FLEETWARD_CHECKPOINT_DIR"):
        _actions(FLEETWARD_JWT_SECRET=GOOD_USER, FLEETWARD_CHECKPOINT_KEY_FILE="/tmp/k.pem")
    settings = _actions(
        FLEETWARD_JWT_SECRET=GOOD_USER,
        FLEETWARD_CHECKPOINT_DIR="/tmp/cp",
        FLEETWARD_CHECKPOINT_KEY_FILE="/tmp/k.pem",
        FLEETWARD_CHECKPOINT_INTERVAL_S="15",
    )
    assert (str(settings.checkpoint_dir), settings.checkpoint_interval_s) == ("/tmp/cp", 15.0)
    assert _actions(FLEETWARD_JWT_SECRET=GOOD_USER).checkpoint_dir is None


def test_the_policy_service_refuses_a_short_secret_and_odd_callers() -> None:
    with pytest.raises(SettingsError, match="32 bytes"):
        PolicySettings.from_env({"FLEETWARD_SERVICE_JWT_SECRET": "short"})
    with pytest.raises(SettingsError, match="svc:<name>"):
        PolicySettings.from_env(
            {
                "FLEETWARD_SERVICE_JWT_SECRET": GOOD_SERVICE,
                "FLEETWARD_POLICY_ALLOWED_CALLERS": "bob",
            }
        )
    default = PolicySettings.from_env({"FLEETWARD_SERVICE_JWT_SECRET": GOOD_SERVICE})
    assert default.allowed_callers == frozenset({"svc:actions"})
    listed = PolicySettings.from_env(
        {
            "FLEETWARD_SERVICE_JWT_SECRET": GOOD_SERVICE,
            "FLEETWARD_POLICY_ALLOWED_CALLERS": " svc:actions, svc:debug ,",
        }
    )
    assert listed.allowed_callers == frozenset({"svc:actions", "svc:debug"})
