"""Offline commands on policy files: ``validate``, ``test`` and ``explain``.

They read the files directly (no running service). ``validate`` answers what a reload
would: the files are valid and every policy test passes (``test`` runs the same cases and
shows each result). Exit codes: 0 fine, 1 the files have errors or a policy test failed,
2 bad command-line input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from fleetward.policy.v1 import policy_pb2

from services.policy.engine import CasbinDecider, decide_safely
from services.policy.files import PolicyFiles, PolicyFilesError, read_policy_dir
from services.policy.loader import PolicyLoadError, build_decider
from services.policy.policytests import CaseResult, SuiteError, parse_suites, run_cases
from services.policy.queries import parse_query
from services.policy.validate import validate

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _default_dir() -> Path:
    return Path(os.environ.get("FLEETWARD_POLICY_DIR") or "policies")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``validate``, ``test`` and ``explain`` on a subparser set."""
    v = sub.add_parser(
        "validate",
        help="check model.conf and policy.csv and run the tests/*.yaml cases",
        description="Check model.conf and policy.csv (errors and warnings, as file:line) and "
        "run every case in tests/*.yaml, as a reload does before it serves the files: OK "
        "(exit 0) only when a reload would accept them; each failing case is printed as "
        "`test` prints it (exit 1).",
    )
    v.add_argument(
        "directory",
        type=Path,
        nargs="?",
        default=None,
        help="the policy directory (default: $FLEETWARD_POLICY_DIR, else policies/)",
    )
    t = sub.add_parser("test", help="run the policy test suites in tests/*.yaml")
    t.add_argument("directory", type=Path, nargs="?", default=None)
    t.add_argument("--json", action="store_true", help="print one JSON document")
    e = sub.add_parser("explain", help="decide one request and show the deciding rule")
    e.add_argument("directory", type=Path, nargs="?", default=None)
    e.add_argument("--subject", required=True)
    e.add_argument("--workspace", required=True, help="workspace id (UUID)")
    e.add_argument("--action", required=True, help="e.g. actions:pause_agent")
    e.add_argument("--resource", required=True, help="e.g. fleet/departments/engineering")
    e.add_argument("--json", action="store_true", help="print one JSON document")


def _load(directory: Path, out: TextIO) -> tuple[PolicyFiles, CasbinDecider] | None:
    """Read, validate and build; print the problems; None when the files have errors."""
    try:
        files = read_policy_dir(directory)
    except PolicyFilesError as exc:
        print(f"error: {exc}", file=out)
        return None
    result = validate(files)
    for problem in result.problems:
        print(problem, file=out)
    if not result.ok:
        return None
    try:
        return files, build_decider(files, result)
    except PolicyLoadError as exc:
        print(f"error: {exc}", file=out)
        return None


def _run_suites(files: PolicyFiles, decider: CasbinDecider) -> list[CaseResult]:
    """Run every case of ``tests/*.yaml`` (what a reload runs before it swaps).

    Raises:
        SuiteError: When a suite is malformed (the message names ``file:line``).
    """
    return run_cases(decider, parse_suites(files.tests))


def _print_failures(results: list[CaseResult], out: TextIO) -> list[CaseResult]:
    """Print each failed case as ``FAIL file:line: …, expected …, got …``; return them."""
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"FAIL {result.failure_text()}", file=out)
    return failed


def run_validate(directory: Path, out: TextIO = sys.stdout) -> int:
    """``validate``: print every problem as ``file:line: severity: message`` and every
    failing policy test as ``test`` does; OK only when a reload would load the files.
    """
    loaded = _load(directory, out)
    if loaded is None:
        print(f"{directory}: INVALID", file=out)
        return EXIT_FAILED
    files, decider = loaded
    try:
        results = _run_suites(files, decider)
    except SuiteError as exc:
        print(f"{exc}", file=out)
        print(f"{directory}: INVALID", file=out)
        return EXIT_FAILED
    failed = _print_failures(results, out)
    if failed:
        print(
            f"{directory}: INVALID ({len(failed)} of {len(results)} test cases failed; "
            f"policy {files.version})",
            file=out,
        )
        return EXIT_FAILED
    print(f"{directory}: OK (policy {files.version}, {len(results)} test cases passed)", file=out)
    return EXIT_OK


def run_test(directory: Path, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """``test``: run every case; print failures as expected vs actual with the rule."""
    messages = sys.stderr if as_json else out
    loaded = _load(directory, messages)
    if loaded is None:
        if as_json:
            print(json.dumps({"ok": False, "error": "the policy files are invalid"}), file=out)
        return EXIT_FAILED
    files, decider = loaded
    try:
        results = _run_suites(files, decider)
    except SuiteError as exc:
        print(exc, file=messages)
        if as_json:
            print(json.dumps({"ok": False, "error": str(exc)}), file=out)
        return EXIT_FAILED
    failed = [r for r in results if not r.passed]
    if as_json:
        doc = {
            "ok": not failed,
            "policy_version": files.version,
            "passed": len(results) - len(failed),
            "failed": len(failed),
            "results": [r.to_dict() for r in results],
        }
        print(json.dumps(doc, indent=2), file=out)
    else:
        _print_failures(results, out)
        print(
            f"{len(results) - len(failed)} passed, {len(failed)} failed "
            f"(policy {files.version}, {len(files.tests)} suites)",
            file=out,
        )
    return EXIT_FAILED if failed else EXIT_OK


def run_explain(
    directory: Path,
    *,
    subject: str,
    workspace: str,
    action: str,
    resource: str,
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """``explain``: print the decision, the reason, the roles and the deciding rule."""
    request = policy_pb2.CheckRequest(
        subject=subject, workspace_id=workspace, action=action, resource=resource, explain=True
    )
    query, violations = parse_query(request)
    if query is None:
        for v in violations:
            print(f"error: --{v.field.replace('_id', '')}: {v.description}", file=sys.stderr)
        return EXIT_USAGE
    loaded = _load(directory, sys.stderr)
    if loaded is None:
        return EXIT_FAILED
    files, decider = loaded
    d = decide_safely(decider, query.subject, query.workspace, action, resource, explain=True)
    where = f"{files.policy_path}:{d.matched_line}" if d.matched_line else ""
    if as_json:
        doc = {
            "allowed": d.allowed,
            "reason": d.reason.value,
            "roles": list(d.roles),
            "matched_rule": d.matched_rule,
            "matched_at": where,
            "policy_version": files.version,
        }
        print(json.dumps(doc, indent=2), file=out)
        return EXIT_OK
    rule = f"{d.matched_rule}  ({where})" if d.matched_rule else "none (no rule matched)"
    print(f"decision: {'allow' if d.allowed else 'deny'}", file=out)
    print(f"reason:   {d.reason.value}", file=out)
    print(f"roles:    {', '.join(d.roles) or 'none in this workspace'}", file=out)
    print(f"rule:     {rule}", file=out)
    print(f"policy:   {files.version}", file=out)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Dispatch a parsed ``validate``/``test``/``explain`` command."""
    directory = args.directory or _default_dir()
    if args.cmd == "validate":
        return run_validate(directory)
    if args.cmd == "test":
        return run_test(directory, as_json=args.json)
    return run_explain(
        directory,
        subject=args.subject,
        workspace=args.workspace,
        action=args.action,
        resource=args.resource,
        as_json=args.json,
    )
