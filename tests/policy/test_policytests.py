"""Parsing policy test suites: malformed suites name ``file:line``."""

from __future__ import annotations

import pytest

from services.policy.enforcer import build_enforcer
from services.policy.engine import Reason, make_decider
from services.policy.files import read_policy_dir
from services.policy.policytests import SuiteError, parse_suite, run_cases
from services.policy.validate import PolicyLine
from tests.policy.conftest import POLICIES

WS = "ac3e0000-0000-4000-8000-000000000001"


def test_cases_take_defaults_and_line_numbers() -> None:
    text = f"""defaults:
  workspace: {WS}
cases:
  - {{subject: bob, action: actions:read, resource: fleet, expect: allow}}
  - subject: carol
    workspace: {WS.upper()}
    action: actions:pause_agent
    resource: fleet/departments/support
    expect: deny
    reason: DECISION_REASON_NO_MATCHING_RULE
"""
    first, second = parse_suite("t.yaml", text)
    assert (first.line, first.workspace, first.expect_allow, first.reason) == (4, WS, True, None)
    assert (second.line, second.workspace, second.expect_allow) == (5, WS, False)
    assert second.reason is Reason.NO_MATCHING_RULE


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("{subject: bob, action: actions:read, resource: fleet, expect: maybe}", "expect must be"),
        ("{subject: bob, action: actions:read, resource: fleet, expect: yes}", "must be a string"),
        ("{subject: bob, action: actions:read, resource: fleet}", "'expect' is missing"),
        ("{subject: bob, action: actions:fly, resource: fleet, expect: allow}", "unknown action"),
        ("{subject: bob, action: actions:read, resource: fleet/x, expect: allow}", "resource"),
        (
            "{subject: bob, action: actions:read, resource: fleet, expect: allow, reason: OK}",
            "unknown reason 'OK'",
        ),
        (
            "{subject: bob, action: actions:read, resource: fleet, expect: allow, extra: 1}",
            "unknown keys ['extra']",
        ),
        (
            "{subject: bob, action: actions:read, resource: fleet, expect: allow, denied: []}",
            "'denied' needs 'changes'",
        ),
        (
            "{subject: bob, action: actions:read, resource: fleet, expect: allow, changes: x}",
            "must be a list of resource paths",
        ),
        (
            "{subject: bob, action: actions:read, resource: fleet, expect: allow, "
            "changes: [fleet/**]}",
            "non-resource paths",
        ),
        (
            "{subject: bob, action: actions:read, resource: fleet, expect: deny, "
            "changes: [fleet/departments/a], denied: [fleet/departments/b]}",
            "not in the case",
        ),
    ],
)
def test_malformed_case_names_file_and_line(case: str, message: str) -> None:
    text = f"defaults:\n  workspace: {WS}\ncases:\n  - {case}\n"
    with pytest.raises(SuiteError, match=r"^t\.yaml:4: ") as caught:
        parse_suite("t.yaml", text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: [unclosed\n", "t.yaml:2: invalid YAML"),
        ("- just a list\n", "t.yaml:1: a suite is a mapping with a 'cases' list"),
        ("cases: []\ncase: []\n", "unknown keys ['case']"),
    ],
)
def test_malformed_suite(text: str, message: str) -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite("t.yaml", text)
    assert message in str(caught.value)


def test_a_case_with_changes_is_decided_on_the_target_and_every_change() -> None:
    lines = [
        PolicyLine(
            1, "p", ("operator", "*", "fleet/departments/**", "actions:pause_agent", "allow")
        ),
        PolicyLine(
            2,
            "p",
            ("operator", "*", "fleet/departments/e/agents/r-*", "actions:pause_agent", "deny"),
        ),
        PolicyLine(3, "g", ("bob", "operator", "*")),
    ]
    files = read_policy_dir(POLICIES, with_tests=False)
    decider = make_decider(build_enforcer(files, lines), lines)
    agents = "[fleet/departments/e/agents/c-1, fleet/departments/e/agents/r-1]"
    text = f"""defaults: {{workspace: {WS}, subject: bob, action: actions:pause_agent}}
cases:
  - {{resource: fleet/departments/e, changes: {agents}, expect: deny,
     reason: EXPLICIT_DENY, denied: [fleet/departments/e/agents/r-1]}}
  - {{resource: fleet/departments/e, changes: {agents}, expect: deny, denied: []}}
  - {{resource: fleet/departments/e, changes: [fleet/departments/e/agents/c-1], expect: allow}}
"""
    right, wrong, allowed = run_cases(decider, parse_suite("t.yaml", text))
    assert right.passed
    assert right.denied == ("fleet/departments/e/agents/r-1",)
    assert not wrong.passed
    assert "denied []" in wrong.failure_text()
    assert "denied ['fleet/departments/e/agents/r-1']" in wrong.failure_text()
    assert allowed.passed
    assert allowed.decision.roles == ("operator",)
