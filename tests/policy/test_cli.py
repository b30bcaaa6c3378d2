"""``python -m services.policy validate|test|explain``: exit codes and output, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.policy.conftest import AGENT, DEMO_WS, POLICIES, REPO_ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "services.policy", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_accepts_the_demo_policy() -> None:
    result = run("validate", "policies/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert " test cases passed)" in result.stdout


def test_validate_runs_the_policy_tests_and_fails_when_one_fails(policy_copy: Path) -> None:
    # Loadable files (no validation error) whose own tests fail: a reload refuses them,
    # so validate must too, printing each failing case exactly as `test` does.
    with (policy_copy / "policy.csv").open("a") as f:
        f.write(f"g, carol, operator, {DEMO_WS}\n")
    validated = run("validate", str(policy_copy))
    tested = run("test", str(policy_copy))

    assert validated.returncode == 1
    failures = [line for line in validated.stdout.splitlines() if line.startswith("FAIL ")]
    assert failures
    assert failures == [line for line in tested.stdout.splitlines() if line.startswith("FAIL ")]
    assert "expected deny (NO_MATCHING_RULE), got allow (ALLOWED)" in failures[0]
    cases = int(tested.stdout.splitlines()[-1].split()[0]) + len(failures)  # "N passed, …"
    last = validated.stdout.splitlines()[-1]
    assert last.startswith(f"{policy_copy}: INVALID ({len(failures)} of {cases} test cases failed")
    assert "OK" not in validated.stdout


def test_validate_help_says_it_runs_the_tests() -> None:
    overview = run("--help")
    detail = run("validate", "--help")

    assert "run the tests/*.yaml cases" in " ".join(overview.stdout.split())
    assert "as a reload does" in " ".join(detail.stdout.split())


def test_validate_names_file_and_line_and_fails(policy_copy: Path) -> None:
    with (policy_copy / "policy.csv").open("a") as f:
        f.write("q, viewer, *, fleet/**, actions:read, allow\n")
        f.write("p, viewer, *, fleet/**, actions:read, alow\n")
    lines = len((policy_copy / "policy.csv").read_text().splitlines())
    result = run("validate", str(policy_copy))
    assert result.returncode == 1
    csv = policy_copy / "policy.csv"
    assert f"{csv}:{lines - 1}: error: unknown ptype 'q'" in result.stdout
    assert f"{csv}:{lines}: error: effect 'alow' is not allow or deny" in result.stdout
    assert "INVALID" in result.stdout


def test_validate_warnings_do_not_fail(policy_copy: Path) -> None:
    with (policy_copy / "policy.csv").open("a") as f:
        f.write("g, erin, operater, *\n")
    result = run("validate", str(policy_copy))
    assert result.returncode == 0
    assert "warning: role 'operater' is bound but grants nothing" in result.stdout


def test_validate_reports_a_broken_suite(policy_copy: Path) -> None:
    with (policy_copy / "tests" / "demo.yaml").open("a") as f:
        f.write("  - {subject: bob, action: actions:read, resource: fleet, expect: maybe}\n")
    result = run("validate", str(policy_copy))
    assert result.returncode == 1
    assert "expect must be allow or deny" in result.stdout


def test_test_passes_on_the_demo_suite() -> None:
    result = run("test", "policies/")
    assert result.returncode == 0, result.stdout
    assert " 0 failed" in result.stdout


def test_test_prints_expected_vs_actual_with_the_rule(policy_copy: Path) -> None:
    with (policy_copy / "policy.csv").open("a") as f:
        f.write(f"g, carol, operator, {DEMO_WS}\n")
    result = run("test", str(policy_copy))
    assert result.returncode == 1
    failure = next(
        line
        for line in result.stdout.splitlines()
        if "carol actions:pause_agent fleet/departments/engineering " in line
    )
    assert failure.startswith(f"FAIL {policy_copy / 'tests' / 'demo.yaml'}:")
    assert "expected deny (NO_MATCHING_RULE), got allow (ALLOWED)" in failure
    assert "matched rule: p, operator, *, fleet/departments/**, actions:pause_agent, allow" in (
        failure
    )


def test_test_json_output(policy_copy: Path) -> None:
    with (policy_copy / "policy.csv").open("a") as f:
        f.write(f"g, carol, operator, {DEMO_WS}\n")
    result = run("test", "--json", str(policy_copy))
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["failed"] > 0
    assert doc["passed"] + doc["failed"] == len(doc["results"])
    failed = [r for r in doc["results"] if not r["passed"]]
    assert all(r["subject"] == "carol" for r in failed)
    assert failed[0]["expected"] == "deny"
    assert failed[0]["actual"] == "allow"
    passing = json.loads(run("test", "--json", str(POLICIES)).stdout)
    assert passing["ok"] is True


def test_explain_prints_decision_reason_roles_and_rule() -> None:
    result = run(
        "explain",
        "--subject",
        "bob",
        "--workspace",
        DEMO_WS,
        "--action",
        "actions:pause_agent",
        "--resource",
        AGENT,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "decision: allow" in out
    assert "reason:   ALLOWED" in out
    assert "roles:    operator, viewer" in out
    assert "rule:     p, operator, *, fleet/departments/**, actions:pause_agent, allow" in out
    assert "policy.csv:" in out


def test_explain_deny_json() -> None:
    result = run(
        "explain",
        "--json",
        "--subject",
        "bob",
        "--workspace",
        DEMO_WS,
        "--action",
        "actions:pause_agent",
        "--resource",
        "fleet/departments/engineering/agents/eng-review-1",
    )
    doc = json.loads(result.stdout)
    assert doc["allowed"] is False
    assert doc["reason"] == "EXPLICIT_DENY"
    assert doc["matched_rule"].endswith("actions:pause_agent, deny")


def test_explain_rejects_a_bad_resource() -> None:
    result = run(
        "explain",
        "--subject",
        "bob",
        "--workspace",
        DEMO_WS,
        "--action",
        "actions:pause_agent",
        "--resource",
        "fleet/../etc",
    )
    assert result.returncode == 2
    assert "--resource" in result.stderr


def test_validate_catches_a_matcher_that_fails_at_check_time(policy_copy: Path) -> None:
    model = policy_copy / "model.conf"
    model.write_text(model.read_text().replace("keyMatch(", "keyMatsch("))
    result = run("validate", str(policy_copy))
    assert result.returncode == 1
    assert f"{model}:" in result.stdout
    assert "the matcher fails" in result.stdout
