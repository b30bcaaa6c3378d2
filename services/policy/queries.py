"""Checking a ``CheckRequest`` before it reaches the policy: missing or malformed fields
become ``BadRequest`` field violations (INVALID_ARGUMENT), never a silent deny."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetward.policy.v1 import policy_pb2

from services.common.status import FieldViolation
from services.policy import names

MAX_BATCH = 100
MAX_SUBJECT = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Query:
    """A well-formed question (workspace normalized to its canonical UUID form)."""

    subject: str
    workspace: str
    action: str
    resource: str
    explain: bool


def _subject_problem(subject: str) -> str | None:
    if not subject:
        return "required"
    if len(subject) > MAX_SUBJECT:
        return f"at most {MAX_SUBJECT} characters"
    if subject != subject.strip() or _CONTROL.search(subject):
        return "must not contain control characters or surrounding whitespace"
    return None


def _action_problem(action: str) -> str | None:
    if not action:
        return "required"
    if action not in names.known_permissions():
        known = ", ".join(sorted(names.known_permissions()))
        return f"unknown permission {action!r}; one of {known}"
    return None


def parse_query(
    request: policy_pb2.CheckRequest, prefix: str = ""
) -> tuple[Query | None, list[FieldViolation]]:
    """Check one request; return the query, or None and the field violations.

    Args:
        request: The request.
        prefix: Prepended to field names (``checks[3].`` inside a batch).
    """
    violations: list[FieldViolation] = []
    problem = _subject_problem(request.subject)
    if problem:
        violations.append(FieldViolation(prefix + "subject", problem))
    workspace = names.normalize_workspace(request.workspace_id)
    if not request.workspace_id:
        violations.append(FieldViolation(prefix + "workspace_id", "required"))
    elif workspace is None:
        violations.append(FieldViolation(prefix + "workspace_id", "must be a UUID"))
    problem = _action_problem(request.action)
    if problem:
        violations.append(FieldViolation(prefix + "action", problem))
    if not request.resource:
        violations.append(FieldViolation(prefix + "resource", "required"))
    elif not names.is_resource(request.resource):
        violations.append(
            FieldViolation(
                prefix + "resource",
                "must be fleet, fleet/departments/<id> or fleet/departments/<id>/agents/<id> "
                "with ids matching ^[a-z0-9][a-z0-9._-]{0,63}$",
            )
        )
    if violations or workspace is None:
        return None, violations
    query = Query(request.subject, workspace, request.action, request.resource, request.explain)
    return query, []


def parse_batch(
    request: policy_pb2.BatchCheckRequest,
) -> tuple[list[Query], list[FieldViolation]]:
    """Check a batch of 1..100 requests; violations name ``checks[i].<field>``."""
    count = len(request.checks)
    if not 1 <= count <= MAX_BATCH:
        return [], [FieldViolation("checks", f"must hold 1..{MAX_BATCH} checks, got {count}")]
    queries: list[Query] = []
    violations: list[FieldViolation] = []
    for i, check in enumerate(request.checks):
        query, found = parse_query(check, f"checks[{i}].")
        violations.extend(found)
        if query is not None:
            queries.append(query)
    return queries, violations
