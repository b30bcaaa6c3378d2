"""Authorizing what an action changes, not only what it names (docs/architecture.md §5.10).

No agent or budget changes unless the caller holds the permission of that change on that
resource's own policy path, under the one policy version the action records. Naming a
wider target never widens what a caller may do: a deny on one agent holds against a
department- or fleet-scope action and against a rollback exactly as against an action
on that agent.

A :class:`Grant` is the answer for one permission over a set of paths. Execute and
Rollback ask for one before they record anything (the target's path plus every resource
the planned effect changes), and the effect, under its row locks, keeps only the
changes whose path the grant allows (:meth:`Grant.split`). A resource the grant never
saw (an agent that joined the department, or moved, after the check) is never changed
unchecked: a department- or fleet-wide action leaves it as it is and reports it; where
the action named it (agent scope, a rollback's recorded targets) the action fails with
ABORTED ``TARGETS_CHANGED`` (:func:`require_checked`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetward.policy.v1 import policy_pb2

from services.actions import access, errors
from services.actions.call import Call
from services.actions.catalog import RESULT_AGENT_LIMIT, Change
from services.actions.policy_gateway import PolicyDecision, PolicyGateway

DENIED = "denied"
UNCHECKED = "unchecked"
_REASON_NAMES: dict[int, str] = {
    int(value): name.removeprefix("DECISION_REASON_")
    for name, value in policy_pb2.DecisionReason.items()
}


@dataclass(frozen=True)
class Skip:
    """A planned change left out, and why (``denied``, ``unchecked``, ``superseded``)."""

    target: str  # Change.label: agent/<id> or budget/<scope>:<id>
    reason: str
    detail: Mapping[str, str]

    def entry(self) -> dict[str, Any]:
        """How the action's ``result.skipped`` lists it."""
        return {"target": self.target, "reason": self.reason, **self.detail}


@dataclass(frozen=True)
class Grant:
    """One permission for one caller over a set of resource paths, under one policy version."""

    permission: str
    policy_version: str
    decision_id: str
    roles: tuple[str, ...]
    has_role: bool
    checked: frozenset[str]
    denied: Mapping[str, int]  # path -> policy DecisionReason

    @classmethod
    def of(cls, permission: str, resource: str, decision: PolicyDecision) -> Grant:
        """The grant of one Check decision on one path."""
        return cls(
            permission,
            decision.policy_version,
            decision.decision_id,
            decision.roles if decision.has_role else (),
            decision.has_role,
            frozenset((resource,)),
            {} if decision.allowed else {resource: decision.reason},
        )

    def allows(self, resource: str) -> bool:
        """Whether the caller may make this grant's change on ``resource``."""
        return resource in self.checked and resource not in self.denied

    def split(self, changes: Sequence[Change]) -> tuple[list[Change], list[Skip]]:
        """The changes this grant allows, and the others as skips (denied or unchecked)."""
        kept: list[Change] = []
        skipped: list[Skip] = []
        for change in changes:
            if self.allows(change.resource):
                kept.append(change)
            elif change.resource in self.denied:
                reason = _REASON_NAMES.get(self.denied[change.resource], "")
                detail = {"permission": self.permission, "policy_reason": reason}
                skipped.append(Skip(change.label, DENIED, detail))
            else:
                detail = {"detail": "joined the target or changed department after the check"}
                skipped.append(Skip(change.label, UNCHECKED, detail))
        return kept, skipped

    def refusal(
        self, target: str | None, planned: Sequence[Change], skip_denied: bool
    ) -> errors.ServiceError | None:
        """The PERMISSION_DENIED that refuses the whole action, or None when it may run.

        Refused: a denied target path; else any denied change, unless ``skip_denied`` and
        some allowed change remains (denials that leave nothing to do still refuse).
        """
        if target is not None and target in self.denied:
            return self.denial()
        kept, skipped = self.split(planned)
        if not any(s.reason == DENIED for s in skipped) or (skip_denied and kept):
            return None
        return self.denial(planned)

    def denial(self, changes: Sequence[Change] = ()) -> errors.ServiceError:
        """PERMISSION_DENIED for this grant; naming the denied agents among ``changes``."""
        denied = [c.key for c in changes if c.kind == "agent" and c.resource in self.denied]
        return errors.permission_denied(
            self.permission,
            self.roles,
            self.policy_version,
            denied_agents=denied,
            checked_agents=len(changes),
        )


def question_resources(target: str | None, changes: Sequence[Change]) -> list[str]:
    """The paths to decide: the target's (when given) first, then each change's, once.

    A change without a path (an agent budget whose agent is unknown) is not asked about:
    it stays unchecked, so it is never applied.
    """
    seen: dict[str, None] = {} if target is None else {target: None}
    for change in changes:
        if change.resource:
            seen.setdefault(change.resource, None)
    return list(seen)


def require_checked(action_id: uuid.UUID, skipped: Sequence[Skip]) -> None:
    """ABORTED ``TARGETS_CHANGED`` when a change the action names was never checked."""
    moved = [s.target for s in skipped if s.reason == UNCHECKED]
    if moved:
        raise errors.targets_changed(str(action_id), moved)


async def grant(
    policy: PolicyGateway,
    call: Call,
    workspace_id: uuid.UUID,
    permission: str,
    resources: Sequence[str],
) -> Grant:
    """Decide ``permission`` for the caller on every path, under one policy version.

    One path is a plain Check (cached by the policy service); more go in one
    CheckResources.
    """
    if len(resources) == 1:
        question = access.question(call, workspace_id, permission, resources[0])
        return Grant.of(permission, resources[0], await policy.check(question, call.remaining()))
    answer = await policy.check_resources(
        call.subject, str(workspace_id), permission, resources, call.remaining()
    )
    return Grant(
        permission,
        answer.policy_version,
        answer.decision_id,
        answer.roles,
        answer.has_role,
        frozenset(resources),
        answer.denied,
    )


def result_skips(skipped: Sequence[Skip]) -> dict[str, Any]:
    """``skipped`` (at most 100 entries) and ``skipped_count`` for an action's result."""
    return {
        "skipped": [s.entry() for s in skipped[:RESULT_AGENT_LIMIT]],
        "skipped_count": len(skipped),
    }
