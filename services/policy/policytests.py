"""Policy test suites (``policies/tests/*.yaml``): cases with an expected decision.

A suite::

    defaults:
      workspace: ac3e0000-0000-4000-8000-000000000001
    cases:
      - {subject: bob, action: actions:pause_agent,
         resource: fleet/departments/engineering, expect: allow}
      - {subject: carol, action: actions:pause_agent, resource: fleet,
         expect: deny, reason: NO_MATCHING_RULE}

``workspace`` may be set per case; ``reason`` (a ``DecisionReason`` name, with or without
the ``DECISION_REASON_`` prefix) and ``name`` are optional.

A case can also pin what an action at a department or fleet target is allowed to do: it
names the paths the action would change in ``changes``, and is allowed only when the
target and every change are (the action service's rule, docs/architecture.md §5.10).
``denied`` optionally lists exactly which of them are denied::

      - {subject: bob, action: actions:pause_agent,
         resource: fleet/departments/engineering,
         changes: [fleet/departments/engineering/agents/eng-code-1,
                   fleet/departments/engineering/agents/eng-review-1],
         expect: deny, denied: [fleet/departments/engineering/agents/eng-review-1]}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from services.common import names
from services.policy.engine import (
    Decider,
    Decision,
    Reason,
    decide_resources_safely,
    decide_safely,
)

_CASE_KEYS = {
    "name",
    "subject",
    "workspace",
    "action",
    "resource",
    "expect",
    "reason",
    "changes",
    "denied",
}
_LINE = "__line__"


class SuiteError(Exception):
    """A suite file is malformed; the message names ``file:line``."""


@dataclass(frozen=True)
class Case:
    """One expectation."""

    file: str
    line: int
    name: str
    subject: str
    workspace: str
    action: str
    resource: str
    expect_allow: bool
    reason: Reason | None = None
    changes: tuple[str, ...] = ()  # the paths an action at ``resource`` would change
    expect_denied: tuple[str, ...] | None = None  # exactly these of them denied

    def describe(self) -> str:
        """``subject action resource @ workspace`` (and how many changes)."""
        label = f"{self.name}: " if self.name else ""
        changing = f" changing {len(self.changes)} paths" if self.changes else ""
        return f"{label}{self.subject} {self.action} {self.resource}{changing} @ {self.workspace}"


@dataclass(frozen=True)
class CaseResult:
    """A case and the decision it got."""

    case: Case
    decision: Decision  # with changes: the first denial's (or an allow)
    denied: tuple[str, ...] = ()  # with changes: every denied path, in case order

    @property
    def passed(self) -> bool:
        """The decision matches the expectation (and the reason and denied paths, when
        those are expected).
        """
        if self.decision.allowed != self.case.expect_allow:
            return False
        if self.case.expect_denied is not None and set(self.denied) != set(self.case.expect_denied):
            return False
        return self.case.reason is None or self.case.reason is self.decision.reason

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        c, d = self.case, self.decision
        return {
            "file": c.file,
            "line": c.line,
            "name": c.name,
            "subject": c.subject,
            "workspace": c.workspace,
            "action": c.action,
            "resource": c.resource,
            "expected": "allow" if c.expect_allow else "deny",
            "expected_reason": c.reason.value if c.reason else None,
            "actual": "allow" if d.allowed else "deny",
            "actual_reason": d.reason.value,
            "roles": list(d.roles),
            "matched_rule": d.matched_rule,
            "changes": list(c.changes),
            "expected_denied": None if c.expect_denied is None else list(c.expect_denied),
            "denied": list(self.denied),
            "passed": self.passed,
        }

    def failure_text(self) -> str:
        """``file:line: case: expected …, got …`` with the deciding rule."""
        c, d = self.case, self.decision
        expected = "allow" if c.expect_allow else "deny"
        if c.reason:
            expected += f" ({c.reason.value})"
        actual = f"{'allow' if d.allowed else 'deny'} ({d.reason.value})"
        if c.expect_denied is not None:
            expected += f", denied {sorted(c.expect_denied)}"
        if c.changes:
            actual += f", denied {sorted(self.denied)}"
        rule = d.matched_rule or "no rule matched"
        roles = ", ".join(d.roles) or "none"
        return (
            f"{c.file}:{c.line}: {c.describe()}: expected {expected}, got {actual}; "
            f"matched rule: {rule}; roles: {roles}"
        )


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line number."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[_LINE] = node.start_mark.line + 1
        return mapping


def _reason(value: Any, where: str) -> Reason:
    text = str(value).upper().removeprefix("DECISION_REASON_")
    try:
        return Reason(text)
    except ValueError:
        known = ", ".join(r.value for r in Reason)
        raise SuiteError(f"{where}: unknown reason {value!r} (known: {known})") from None


def _case(path: str, raw: Any, defaults: dict[str, Any], index: int) -> Case:
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: case {index + 1} is not a mapping")
    line = int(raw.pop(_LINE, 0))
    where = f"{path}:{line}"
    unknown = set(raw) - _CASE_KEYS
    if unknown:
        raise SuiteError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_CASE_KEYS)})")
    merged = {**defaults, **raw}
    for key in ("subject", "workspace", "action", "resource", "expect"):
        value = merged.get(key)
        if value is None or value == "":
            raise SuiteError(f"{where}: {key!r} is missing")
        if not isinstance(value, str):
            raise SuiteError(f"{where}: {key!r} must be a string, got {value!r} (quote it)")
    workspace = names.normalize_workspace(merged["workspace"])
    if workspace is None:
        raise SuiteError(f"{where}: workspace {merged['workspace']!r} is not a UUID")
    if not names.is_resource(merged["resource"]):
        raise SuiteError(f"{where}: resource {merged['resource']!r} is not a resource path")
    if merged["action"] not in names.known_permissions():
        raise SuiteError(f"{where}: unknown action {merged['action']!r}")
    if merged["expect"] not in ("allow", "deny"):
        raise SuiteError(f"{where}: expect must be allow or deny, not {merged['expect']!r}")
    reason = _reason(merged["reason"], where) if merged.get("reason") else None
    changes = _paths(merged.get("changes", []), "changes", where)
    expect_denied = None
    if "denied" in merged:
        if not changes:
            raise SuiteError(f"{where}: 'denied' needs 'changes'")
        expect_denied = _paths(merged["denied"], "denied", where)
        stray = set(expect_denied) - {merged["resource"], *changes}
        if stray:
            raise SuiteError(f"{where}: denied paths not in the case: {sorted(stray)}")
    return Case(
        file=path,
        line=line,
        name=str(merged.get("name") or ""),
        subject=merged["subject"],
        workspace=workspace,
        action=merged["action"],
        resource=merged["resource"],
        expect_allow=merged["expect"] == "allow",
        reason=reason,
        changes=changes,
        expect_denied=expect_denied,
    )


def _paths(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SuiteError(f"{where}: {key!r} must be a list of resource paths")
    bad = [v for v in value if not names.is_resource(v)]
    if bad:
        raise SuiteError(f"{where}: {key!r} holds non-resource paths: {bad}")
    return tuple(value)


def parse_suite(path: str, text: str) -> list[Case]:
    """Parse one YAML suite.

    Raises:
        SuiteError: When the YAML or a case is malformed.
    """
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise SuiteError(f"{path}:{line}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise SuiteError(f"{path}:1: a suite is a mapping with a 'cases' list")
    doc.pop(_LINE, None)
    unknown = set(doc) - {"defaults", "cases"}
    if unknown:
        raise SuiteError(f"{path}:1: unknown keys {sorted(unknown)} (known: defaults, cases)")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise SuiteError(f"{path}:1: 'defaults' must be a mapping")
    defaults.pop(_LINE, None)
    if set(defaults) - (_CASE_KEYS - {"name"}):
        raise SuiteError(f"{path}:1: unknown keys in defaults: {sorted(defaults)}")
    return [_case(path, raw, defaults, i) for i, raw in enumerate(doc["cases"])]


def parse_suites(suites: Iterable[tuple[str, str]]) -> list[Case]:
    """Parse every (path, text) suite, in order."""
    return [case for path, text in suites for case in parse_suite(path, text)]


def run_cases(decider: Decider, cases: Iterable[Case]) -> list[CaseResult]:
    """Decide every case (fail-closed, with explanations)."""
    return [_run(decider, case) for case in cases]


def _run(decider: Decider, case: Case) -> CaseResult:
    if not case.changes:
        decision = decide_safely(
            decider, case.subject, case.workspace, case.action, case.resource, explain=True
        )
        return CaseResult(case, decision)
    paths = [case.resource, *case.changes]
    answer = decide_resources_safely(decider, case.subject, case.workspace, case.action, paths)
    denied = tuple(paths[i] for i, _ in answer.denied)
    if answer.denied:
        return CaseResult(case, answer.denied[0][1], denied)
    return CaseResult(case, Decision(True, Reason.ALLOWED, answer.roles), denied)
