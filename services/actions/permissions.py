"""CheckAccess ("can I?"): which permissions the caller holds on each target.

The rule is Execute's (docs/architecture.md, "Authorizing what changes"): a permission
holds on a target when its own path is allowed and, for an action type that changes
agents, so is the path of every non-retired agent in it (a department is allowed for
``pause_agent`` only if the department and every agent in it are). Execute checks the
agents its effect would change at that moment, a subset of these, so "allowed" here
means Execute will not be refused by the policy. ``actions:read`` and
``actions:rollback`` are answered for the target's own path. Nothing is written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from fleetward.policy.v1 import policy_pb2

from services.actions import access, authorize, catalog, errors
from services.actions.authorize import Grant
from services.actions.call import Call
from services.actions.catalog import ActionKind, Target
from services.actions.catalog._base import agent_path
from services.actions.errors import DENIED_IDS_LISTED
from services.actions.policy_client import PolicyClient
from services.actions.validation import AccessCommand

# One statement for every target: whether it exists, and an agent's department.
LOOK_UP_TARGETS = """
SELECT t.scope, t.target_id,
       CASE t.scope WHEN 'agent' THEN a.agent_id IS NOT NULL
                    WHEN 'department' THEN d.department_id IS NOT NULL
                    ELSE w.id IS NOT NULL END AS found,
       CASE t.scope WHEN 'agent' THEN a.department_id ELSE d.department_id END AS department_id
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t (scope, target_id, n)
LEFT JOIN workspaces AS w ON w.id = $1
LEFT JOIN agents AS a ON t.scope = 'agent' AND a.workspace_id = $1 AND a.agent_id = t.target_id
LEFT JOIN departments AS d
       ON t.scope = 'department' AND d.workspace_id = $1 AND d.department_id = t.target_id
ORDER BY t.n"""
# The agents an action at department or fleet scope may change.
AGENTS_IN = """
SELECT agent_id, department_id FROM agents
WHERE workspace_id = $1 AND status <> 'retired' AND ($2 OR department_id = ANY($3::text[]))
ORDER BY agent_id"""

_CODES: dict[int, str] = {
    policy_pb2.DECISION_REASON_UNKNOWN_WORKSPACE: "NO_ROLE",
    policy_pb2.DECISION_REASON_NO_MATCHING_RULE: "NOT_GRANTED",
    policy_pb2.DECISION_REASON_EXPLICIT_DENY: "EXPLICIT_DENY",
}


@dataclass(frozen=True)
class Denial:
    """One permission the caller does not hold on a target."""

    permission: str
    reason: str  # for people
    code: str  # DenialCode without its prefix
    denied_agents: tuple[str, ...] = ()  # with AGENTS_DENIED: every denied agent id


@dataclass
class TargetAccess:
    """The answer for one target."""

    scope: str
    target_id: str
    allowed: list[str] = field(default_factory=list)
    denied: list[Denial] = field(default_factory=list)


@dataclass(frozen=True)
class Access:
    """The answer for every target, decided under one policy version."""

    results: list[TargetAccess]
    policy_version: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class _Target:
    target: Target
    agents: tuple[tuple[str, str], ...]  # (agent id, its path) a wide action may change


class Permissions:
    """Answers CheckAccess."""

    def __init__(self, pool: asyncpg.Pool, policy: PolicyClient) -> None:
        self._pool = pool
        self._policy = policy

    async def check(self, call: Call, cmd: AccessCommand) -> Access:
        """Which permissions the caller holds on each target (unknown target: NOT_FOUND to a
        reader of the workspace, PERMISSION_DENIED to anyone else, as Execute answers)."""
        call.ensure_time_left()
        found = await self._targets(call, cmd)
        kinds = sorted(catalog.registry().values(), key=lambda k: k.name)
        questions = [access.READ, access.ROLLBACK, *(k.permission for k in kinds)]
        by_permission = {k.permission: k for k in kinds}
        for _ in range(2):
            grants = await asyncio.gather(
                *(
                    self._grant(call, cmd.workspace_id, p, by_permission.get(p), found)
                    for p in questions
                )
            )
            versions = {g.policy_version for g in grants if g is not None}
            if len(versions) <= 1:
                break
        else:
            raise errors.policy_unavailable("the policy was reloaded during the check")
        decided = [g for g in grants if g is not None]
        roles = next((g.roles for g in decided if g.has_role), ())
        results = []
        for t in found:
            answer = TargetAccess(t.target.scope, t.target.target_id)
            for permission, granted in zip(questions, grants, strict=True):
                denial = _denial(permission, by_permission.get(permission), granted, t, roles)
                if denial is None:
                    answer.allowed.append(permission)
                else:
                    answer.denied.append(denial)
            answer.allowed.sort()
            answer.denied.sort(key=lambda d: d.permission)
            results.append(answer)
        return Access(results, decided[0].policy_version if decided else "", roles)

    async def _targets(self, call: Call, cmd: AccessCommand) -> list[_Target]:
        scopes = [scope for scope, _ in cmd.targets]
        ids = [target_id for _, target_id in cmd.targets]
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(LOOK_UP_TARGETS, cmd.workspace_id, scopes, ids)
            missing = next((r for r in rows if not r["found"]), None)
            if missing is not None:
                raise await access.not_found_or_denied(
                    self._policy,
                    call,
                    cmd.workspace_id,
                    access.READ,
                    missing["scope"],
                    missing["target_id"] or str(cmd.workspace_id),
                )
            wide = {r["target_id"] for r in rows if r["scope"] == "department"}
            fleet = "fleet" in scopes
            agents = (
                await conn.fetch(AGENTS_IN, cmd.workspace_id, fleet, sorted(wide))
                if (fleet or wide)
                else []
            )
        paths = [
            (a["agent_id"], a["department_id"], agent_path(a["department_id"], a["agent_id"]))
            for a in agents
        ]
        out = []
        for r in rows:
            scope, target_id = r["scope"], r["target_id"]
            target = Target(cmd.workspace_id, scope, target_id, r["department_id"])
            within = tuple(
                (agent_id, path)
                for agent_id, department_id, path in paths
                if scope == "fleet" or (scope == "department" and department_id == target_id)
            )
            out.append(_Target(target, within))
        return out

    async def _grant(
        self,
        call: Call,
        workspace_id: uuid.UUID,
        permission: str,
        kind: ActionKind | None,
        targets: Sequence[_Target],
    ) -> Grant | None:
        """One decision over every path this permission is asked about (None: none is)."""
        paths: dict[str, None] = {}
        for t in targets:
            if kind is not None and t.target.scope not in kind.scopes:
                continue
            paths.setdefault(t.target.resource, None)
            if kind is not None and kind.reaches_beyond_target(t.target.scope):
                paths.update((path, None) for _, path in t.agents)
        if not paths:
            return None
        return await authorize.grant(self._policy, call, workspace_id, permission, list(paths))


def _denial(
    permission: str,
    kind: ActionKind | None,
    granted: Grant | None,
    t: _Target,
    roles: Sequence[str],
) -> Denial | None:
    target = t.target
    if kind is not None and target.scope not in kind.scopes:
        return Denial(
            permission,
            f"{kind.name} applies at {', '.join(kind.scopes)} scope only",
            "SCOPE_NOT_SUPPORTED",
        )
    assert granted is not None  # asked about every target whose scope applies
    reason = granted.denied.get(target.resource)
    if reason is not None:
        code = _CODES.get(reason, "EVALUATION_ERROR")
        return Denial(permission, _explain(permission, code, target.resource, roles), code)
    if kind is None or not kind.reaches_beyond_target(target.scope):
        return None
    denied = tuple(agent_id for agent_id, path in t.agents if path in granted.denied)
    if not denied:
        return None
    listed = ", ".join(denied[:DENIED_IDS_LISTED])
    more = f" and {len(denied) - DENIED_IDS_LISTED} more" if len(denied) > DENIED_IDS_LISTED else ""
    return Denial(
        permission,
        f"{permission} is denied on {len(denied)} of {len(t.agents)} agents in this "
        f"{target.scope} ({listed}{more}); skip_denied acts on the others",
        "AGENTS_DENIED",
        denied,
    )


def _explain(permission: str, code: str, resource: str, roles: Sequence[str]) -> str:
    if code == "NO_ROLE":
        return f"requires {permission}; you hold no role in this workspace"
    if code == "EXPLICIT_DENY":
        return f"{permission} is denied on {resource} by a deny rule"
    if code == "EVALUATION_ERROR":
        return f"{permission} could not be decided (the policy failed closed)"
    return f"requires {permission}; your roles: {', '.join(roles) or 'none'}"
