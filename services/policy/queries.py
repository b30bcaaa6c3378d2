"""Checking a ``CheckRequest`` before it reaches the policy: missing or malformed fields
become ``BadRequest`` field violations (INVALID_ARGUMENT), never a silent deny.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetward.policy.v1 import policy_pb2

from services.common import names
from services.common.status import FieldViolation
from services.common.subjects import subject_problem

MAX_BATCH = 100
MAX_RESOURCES = 20_000
# A CheckResources request of MAX_RESOURCES of the longest paths (154 characters) is
# about 3.2 MB: the policy service (internal; only service callers) accepts 4 MiB. Its
# answer, every resource denied with a long deny line, can be larger still.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# Bad resources reported one by one; the rest are counted in one more violation.
MAX_RESOURCE_VIOLATIONS = 5
_RESOURCE_PROBLEM = (
    "must be fleet, fleet/departments/<id> or fleet/departments/<id>/agents/<id> "
    "with ids matching ^[a-z0-9][a-z0-9._-]{0,63}$"
)


@dataclass(frozen=True)
class Query:
    """A well-formed question (workspace normalized to its canonical UUID form)."""

    subject: str
    workspace: str
    action: str
    resource: str
    explain: bool


@dataclass(frozen=True)
class ResourcesQuery:
    """A well-formed CheckResources question: one subject and permission, many resources."""

    subject: str
    workspace: str
    action: str
    resources: tuple[str, ...]


def _action_problem(action: str) -> str | None:
    if not action:
        return "required"
    if action not in names.known_permissions():
        known = ", ".join(sorted(names.known_permissions()))
        return f"unknown permission {action!r}; one of {known}"
    return None


def _who_and_what(
    subject: str, workspace_id: str, action: str, prefix: str, violations: list[FieldViolation]
) -> str | None:
    """Check the subject, workspace and permission; the normalized workspace or None."""
    problem = subject_problem(subject)
    if problem:
        violations.append(FieldViolation(prefix + "subject", problem))
    workspace = names.normalize_workspace(workspace_id)
    if not workspace_id:
        violations.append(FieldViolation(prefix + "workspace_id", "required"))
    elif workspace is None:
        violations.append(FieldViolation(prefix + "workspace_id", "must be a UUID"))
    problem = _action_problem(action)
    if problem:
        violations.append(FieldViolation(prefix + "action", problem))
    return workspace


def parse_query(
    request: policy_pb2.CheckRequest, prefix: str = ""
) -> tuple[Query | None, list[FieldViolation]]:
    """Check one request; return the query, or None and the field violations.

    Args:
        request: The request.
        prefix: Prepended to field names (``checks[3].`` inside a batch).
    """
    violations: list[FieldViolation] = []
    workspace = _who_and_what(
        request.subject, request.workspace_id, request.action, prefix, violations
    )
    if not request.resource:
        violations.append(FieldViolation(prefix + "resource", "required"))
    elif not names.is_resource(request.resource):
        violations.append(FieldViolation(prefix + "resource", _RESOURCE_PROBLEM))
    if violations or workspace is None:
        return None, violations
    query = Query(request.subject, workspace, request.action, request.resource, request.explain)
    return query, []


def parse_resources(
    request: policy_pb2.CheckResourcesRequest,
) -> tuple[ResourcesQuery | None, list[FieldViolation]]:
    """Check a CheckResources request; return the query, or None and the field violations.

    At most :data:`MAX_RESOURCE_VIOLATIONS` bad resources are named one by one
    (``resources[i]``); one more violation counts the rest.
    """
    violations: list[FieldViolation] = []
    workspace = _who_and_what(request.subject, request.workspace_id, request.action, "", violations)
    resources = tuple(request.resources)
    if not 1 <= len(resources) <= MAX_RESOURCES:
        violations.append(
            FieldViolation("resources", f"must hold 1..{MAX_RESOURCES} paths, got {len(resources)}")
        )
    else:
        bad = [i for i, path in enumerate(resources) if not names.is_resource(path)]
        for i in bad[:MAX_RESOURCE_VIOLATIONS]:
            violations.append(FieldViolation(f"resources[{i}]", _RESOURCE_PROBLEM))
        if len(bad) > MAX_RESOURCE_VIOLATIONS:
            more = len(bad) - MAX_RESOURCE_VIOLATIONS
            violations.append(FieldViolation("resources", f"{more} more malformed paths"))
    if violations or workspace is None:
        return None, violations
    return ResourcesQuery(request.subject, workspace, request.action, resources), []


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
