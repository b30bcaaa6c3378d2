"""From files to a servable snapshot: read, validate, build, probe, test, warm.

A snapshot is immutable and self-contained, so swapping the one reference to it is
the whole reload; nothing ever calls ``load_policy`` on an enforcer that is serving.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.common import names
from services.policy.enforcer import build_enforcer
from services.policy.engine import CasbinDecider, Decider, make_decider
from services.policy.files import PolicyFiles, PolicyFilesError, read_policy_dir
from services.policy.policytests import SuiteError, parse_suites, run_cases
from services.policy.validate import PolicyLine, ValidationResult, validate

_MAX_LISTED = 5
# A workspace no line names, for the probe request.
_PROBE_WORKSPACE = str(uuid.UUID(int=0))


class PolicyLoadError(Exception):
    """The files cannot be served; the message says why (``file:line: …``)."""


@dataclass(frozen=True)
class PolicySnapshot:
    """One loaded policy: the decider, its version and its size. Never modified."""

    decider: Decider
    version: str
    loaded_at: datetime
    rule_count: int
    role_link_count: int
    warnings: tuple[str, ...] = field(default=())  # logged at the swap; in GetPolicyInfo


def _summarize(messages: list[str], what: str) -> str:
    shown = messages[:_MAX_LISTED]
    more = len(messages) - len(shown)
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"{len(messages)} {what}: " + "; ".join(shown) + suffix


def build_decider(files: PolicyFiles, result: ValidationResult) -> CasbinDecider:
    """Build and probe a decider from validated files.

    Raises:
        PolicyLoadError: When pycasbin rejects the model or the matcher fails on a probe.
    """
    try:
        enforcer = build_enforcer(files, result.lines)
    except Exception as exc:
        raise PolicyLoadError(f"{files.model_path}: pycasbin cannot load the model: {exc}") from exc
    decider = make_decider(enforcer, result.lines)
    probe = _probe_request(result.lines)
    try:
        decider.probe(*probe)
    except Exception as exc:
        line = result.model.key_lines.get("m", 1)
        raise PolicyLoadError(
            f"{files.model_path}:{line}: the matcher fails on {probe}: {type(exc).__name__}: {exc}"
        ) from exc
    return decider


def _probe_request(lines: tuple[PolicyLine, ...]) -> tuple[str, str, str, str]:
    """A request that passes every clause of the matcher for the first p line."""
    for line in lines:
        if line.ptype == "p":
            subject, workspace, _, action, _ = line.fields
            if workspace == names.ANY_WORKSPACE:
                workspace = _PROBE_WORKSPACE
            if action.endswith("*"):
                action = "actions:read"
            return subject, workspace, action, "fleet"
    return "probe", _PROBE_WORKSPACE, "actions:read", "fleet"


def load_files(files: PolicyFiles, *, run_tests: bool = True) -> PolicySnapshot:
    """Validate, build, test and warm a snapshot from files already read.

    Raises:
        PolicyLoadError: On any validation error, build error or failing policy test.
    """
    result = validate(files)
    if not result.ok:
        raise PolicyLoadError(_summarize([str(p) for p in result.errors], "validation errors"))
    decider = build_decider(files, result)
    if run_tests:
        try:
            cases = parse_suites(files.tests)
        except SuiteError as exc:
            raise PolicyLoadError(str(exc)) from exc
        failures = [r.failure_text() for r in run_cases(decider, cases) if not r.passed]
        if failures:
            raise PolicyLoadError(_summarize(failures, f"of {len(cases)} policy tests failed"))
    decider.warm("warmup")
    return PolicySnapshot(
        decider=decider,
        version=files.version,
        loaded_at=datetime.now(UTC),
        rule_count=sum(1 for line in result.lines if line.ptype.startswith("p")),
        role_link_count=sum(1 for line in result.lines if line.ptype.startswith("g")),
        warnings=tuple(str(p) for p in result.problems if p.severity == "warning"),
    )


def load_snapshot(directory: Path, *, run_tests: bool = True) -> PolicySnapshot:
    """Read a policy directory and load it (see ``load_files``).

    Raises:
        PolicyLoadError: When the files are missing, invalid or fail their tests.
    """
    try:
        files = read_policy_dir(directory, with_tests=run_tests)
    except PolicyFilesError as exc:
        raise PolicyLoadError(str(exc)) from exc
    return load_files(files, run_tests=run_tests)
