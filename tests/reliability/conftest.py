"""The reliability suite's fixtures and its summary table (issue 8)."""

from __future__ import annotations

import pytest

from tests.reliability import counters, harness
from tests.reliability.harness import (  # noqa: F401 - fixtures
    captured_logs,
    home_a,
    rel_action_target,
    rel_api,
    rel_channel,
    rel_policy_dir,
    rel_policy_target,
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan every log of the suite for secrets and tokens; any found fails the run."""
    if not harness.LOG_LINES and not harness.LOG_FILES:
        return
    found = harness.leaks()
    counters.COUNTS["leaks"] = len(found)
    if found:
        harness.LEAKED.extend(found)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the reliability summary table once, after every test ran."""
    if not any(counters.COUNTS.values()):
        return
    terminalreporter.section("Fleetward reliability summary")
    for line in counters.table():
        terminalreporter.write_line(line)
    for line in harness.LEAKED[:20]:
        terminalreporter.write_line(f"LEAK {line}", red=True)
