"""The security suite shares the reliability suite's servers and log capture."""

from __future__ import annotations

from tests.reliability.harness import (  # noqa: F401 - fixtures
    captured_logs,
    home_a,
    rel_action_target,
    rel_api,
    rel_channel,
    rel_policy_dir,
    rel_policy_target,
)
