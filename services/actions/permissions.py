"""CheckAccess ("can I?"): which permissions the caller holds on each target.

The rule is Execute's (docs/architecture.md §5.10): a permission
holds on a target when its own path is allowed and, for an action type that changes
agents, so is the path of every non-retired agent in it (a department is allowed for
``pause_agent`` only if the department and every agent in it are). Execute checks the
agents its effect would change at that moment, a subset of these, so "allowed" here
means Execute will not be refused by the policy. ``actions:read`` and
``actions:rollback`` are answered for the target's own path. Nothing is written.

Asking is reading: the caller needs ``actions:read`` on the workspace's fleet before
anything is looked up (so neither the answer nor its timing tells an outsider what
exists), and on every target it asks about; an unknown target is NOT_FOUND. Agents in a
department or the fleet are looked at only for permissions the target's own path already
allows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from fleetward.policy.v1 import policy_pb2

from services.actions import access, authorize, catalog, errors, store
from services.actions.authorize import Grant
from services.actions.call import Call
from services.actions.catalog import ActionKind, Target
from services.actions.model import Scope
from services.actions.policy_gateway import PolicyGateway
from services.actions.validation import AccessCommand
from services.common.names import FLEET_PATH, agent_path

# An answer names at most this many denied agents per permission and target (the count
# covers them all): 500 targets of long ids stay well inside the 1 MiB message limit.
DENIED_IDS_IN_ANSWER = 5

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


Agents = tuple[tuple[str, str], ...]  # (agent id, its path)


class Permissions:
    """Answers CheckAccess."""

    def __init__(self, pool: asyncpg.Pool, policy: PolicyGateway) -> None:
        self._pool = pool
        self._policy = policy

    async def check(self, call: Call, cmd: AccessCommand) -> Access:
        """Which permissions the caller holds on each target (in request order)."""
        call.ensure_time_left()
        # First, and the same for every request: may the caller read this workspace at all?
        await access.require(self._policy, call, cmd.workspace_id, access.READ, FLEET_PATH)
        asked = list(dict.fromkeys(cmd.targets))  # each distinct target once
        targets = await self._look_up(cmd.workspace_id, asked)
        kinds = sorted(catalog.registry().values(), key=lambda k: k.name)
        for _ in range(2):  # once more if a reload lands between the questions
            decided = await self._decide(call, cmd.workspace_id, targets, kinds)
            if decided is not None:
                break
        else:
            raise errors.policy_unavailable("the policy was reloaded during the check")
        grants, wide, agents = decided
        read = grants[access.READ]
        questions: list[tuple[str, ActionKind[Any] | None]] = [
            (access.READ, None),
            (access.ROLLBACK, None),
        ]
        questions += [(k.permission, k) for k in kinds]
        answers = {}
        for target in targets:
            answer = TargetAccess(target.scope, target.target_id)
            for permission, kind in questions:
                within = agents.get(target.resource, ())
                denial = _denial(
                    permission, kind, grants.get(permission), wide.get(permission), target, within
                )
                if denial is None:
                    answer.allowed.append(permission)
                else:
                    answer.denied.append(denial)
            answer.allowed.sort()
            answer.denied.sort(key=lambda d: d.permission)
            answers[(target.scope, target.target_id)] = answer
        return Access([answers[t] for t in cmd.targets], read.policy_version, read.roles)

    async def _look_up(
        self, workspace_id: uuid.UUID, asked: Sequence[tuple[str, str]]
    ) -> list[Target]:
        """The targets; NOT_FOUND for the first unknown one (the caller reads the fleet)."""
        targets, missing = await store.targets.look_up_many(self._pool, workspace_id, asked)
        if missing is not None:
            raise errors.not_found(missing[0], missing[1] or str(workspace_id))
        return targets

    async def _decide(
        self,
        call: Call,
        workspace_id: uuid.UUID,
        targets: list[Target],
        kinds: list[ActionKind[Any]],
    ) -> tuple[dict[str, Grant], dict[str, Grant], dict[str, Agents]] | None:
        """The grants on the targets' own paths, then on the agents within the targets whose
        own path allows a wide permission; None when they span two policy versions.
        """
        own = {access.READ: targets, access.ROLLBACK: targets}
        own.update({k.permission: [t for t in targets if t.scope in k.scopes] for k in kinds})
        grants = await self._grants(
            call, workspace_id, {p: [t.resource for t in ts] for p, ts in own.items()}
        )
        unreadable = [t for t in targets if t.resource in grants[access.READ].denied]
        if unreadable:
            # Told apart from an unknown target by nothing: the same denial.
            raise grants[access.READ].denial()
        reaching = {
            k.permission: [
                t
                for t in own[k.permission]
                if k.reaches_beyond_target(t.scope)
                and t.resource not in grants[k.permission].denied
            ]
            for k in kinds
        }
        agents = await self._agents(workspace_id, [t for ts in reaching.values() for t in ts])
        wide = await self._grants(
            call,
            workspace_id,
            {p: [path for t in ts for _, path in agents[t.resource]] for p, ts in reaching.items()},
        )
        versions = {g.policy_version for g in (*grants.values(), *wide.values())}
        return (grants, wide, agents) if len(versions) == 1 else None

    async def _grants(
        self, call: Call, workspace_id: uuid.UUID, paths: dict[str, list[str]]
    ) -> dict[str, Grant]:
        """One grant per permission over its paths (each path once); none for no paths."""
        asked = {p: list(dict.fromkeys(ps)) for p, ps in paths.items() if ps}
        answers = await asyncio.gather(
            *(authorize.grant(self._policy, call, workspace_id, p, ps) for p, ps in asked.items()),
            return_exceptions=True,
        )
        # Every question was answered or failed on its own; the first failure is the
        # answer (POLICY_UNAVAILABLE, DEADLINE_EXCEEDED), as one call would have said.
        grants: dict[str, Grant] = {}
        for permission, answer in zip(asked, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            grants[permission] = answer
        return grants

    async def _agents(self, workspace_id: uuid.UUID, targets: list[Target]) -> dict[str, Agents]:
        """The non-retired agents in each department or fleet target, by its path."""
        if not targets:
            return {}
        fleet = any(t.scope == Scope.FLEET for t in targets)
        departments = sorted({t.target_id for t in targets if t.scope == Scope.DEPARTMENT})
        rows = await store.agents.within(self._pool, workspace_id, fleet, departments)
        by_department: dict[str, list[tuple[str, str]]] = {}
        for r in rows:
            path = agent_path(r["department_id"], r["agent_id"])
            by_department.setdefault(r["department_id"], []).append((r["agent_id"], path))
        out: dict[str, Agents] = {}
        for t in targets:
            if t.scope == Scope.FLEET:
                out[t.resource] = tuple(a for group in by_department.values() for a in group)
            else:
                out[t.resource] = tuple(by_department.get(t.target_id, ()))
        return out


def _denial(
    permission: str,
    kind: ActionKind[Any] | None,
    granted: Grant | None,
    wide: Grant | None,
    target: Target,
    agents: Agents,
) -> Denial | None:
    if kind is not None and target.scope not in kind.scopes:
        return Denial(
            permission,
            f"{kind.name} applies at {', '.join(kind.scopes)} scope only",
            "SCOPE_NOT_SUPPORTED",
        )
    assert granted is not None  # every target whose scope applies was asked about
    reason = granted.denied.get(target.resource)
    if reason is not None:
        code = _CODES.get(reason, "EVALUATION_ERROR")
        return Denial(permission, _explain(permission, code, granted.roles), code)
    if wide is None or kind is None or not kind.reaches_beyond_target(target.scope):
        return None
    denied = tuple(agent_id for agent_id, path in agents if path in wide.denied)
    if not denied:
        return None
    return Denial(
        permission,
        f"{permission} is denied on {len(denied)} of {len(agents)} agents in this "
        f"{target.scope}; skip_denied acts on the others",
        "AGENTS_DENIED",
        denied,
    )


def _explain(permission: str, code: str, roles: Sequence[str]) -> str:
    if code == "NO_ROLE":
        return f"requires {permission}; you hold no role in this workspace"
    if code == "EXPLICIT_DENY":
        return f"{permission} is denied here by a deny rule"
    if code == "EVALUATION_ERROR":
        return f"{permission} could not be decided (the policy failed closed)"
    return f"requires {permission}; your roles: {', '.join(roles) or 'none'}"
