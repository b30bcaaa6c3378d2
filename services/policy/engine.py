"""The decision point: a ``Decider`` answers one question against one loaded policy.

``CasbinDecider`` wraps a ``casbin.Enforcer`` that is never modified after it was built
(``enforcer.build_enforcer``; reloads build a new one, see ``reload.py``).
``IndexedDecider`` answers the same questions from a ``fast_index.DecisionIndex`` built
at load time, so a check costs the lines that can match it, not the size of the policy;
``make_decider`` picks it whenever the model compiles to an index and falls back to plain
``enforce_ex`` otherwise.
"""

from __future__ import annotations

import enum
import logging
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from services.common import names
from services.policy.enforcer import workspace_matches
from services.policy.fast_index import DecisionIndex, Unsupported
from services.policy.validate import PolicyLine

log = logging.getLogger(__name__)


class Reason(enum.Enum):
    """Why a decision came out as it did (``DecisionReason`` without its prefix)."""

    ALLOWED = "ALLOWED"
    NO_MATCHING_RULE = "NO_MATCHING_RULE"
    EXPLICIT_DENY = "EXPLICIT_DENY"
    UNKNOWN_WORKSPACE = "UNKNOWN_WORKSPACE"
    EVALUATION_ERROR = "EVALUATION_ERROR"


@dataclass(frozen=True)
class Decision:
    """One answer: allowed, why, the subject's roles and the deciding policy line."""

    allowed: bool
    reason: Reason
    roles: tuple[str, ...] = ()
    matched_rule: str = ""
    matched_line: int = 0  # the rule's line in policy.csv; 0 when no rule decided


EVALUATION_ERROR = Decision(False, Reason.EVALUATION_ERROR)


@dataclass(frozen=True)
class ResourcesDecision:
    """One subject and permission over many resources: the roles and only the denials."""

    roles: tuple[str, ...]
    denied: list[tuple[int, Decision]]  # (index in the request, its decision), in order


# Answers each decider (one policy version) remembers; about 5 MB at most.
DECISION_CACHE_SIZE = 8192
UNLISTED_WORKSPACE = ""


class Decider(Protocol):
    """Answers permission questions against one immutable policy."""

    thread_safe: ClassVar[bool]  # whether a worker thread may decide while the loop does

    def decide(
        self, subject: str, workspace: str, action: str, resource: str, *, explain: bool
    ) -> Decision:
        """Decide; may raise (callers use ``decide_safely``)."""

    def decide_resources(
        self, subject: str, workspace: str, action: str, resources: Sequence[str]
    ) -> ResourcesDecision:
        """Decide each resource; may raise (callers use ``decide_resources_safely``)."""


def decide_safely(
    decider: Decider, subject: str, workspace: str, action: str, resource: str, *, explain: bool
) -> Decision:
    """Fail closed: any exception while deciding is a deny with EVALUATION_ERROR."""
    try:
        return decider.decide(subject, workspace, action, resource, explain=explain)
    except Exception:
        log.exception(
            "policy evaluation failed; denying",
            extra={"subject": subject, "workspace_id": workspace},
        )
        return EVALUATION_ERROR


def decide_resources_safely(
    decider: Decider, subject: str, workspace: str, action: str, resources: Sequence[str]
) -> ResourcesDecision:
    """Fail closed: any exception denies every resource with EVALUATION_ERROR."""
    try:
        return decider.decide_resources(subject, workspace, action, resources)
    except Exception:
        log.exception(
            "policy evaluation failed; denying the batch",
            extra={"subject": subject, "workspace_id": workspace},
        )
        return ResourcesDecision((), [(i, EVALUATION_ERROR) for i in range(len(resources))])


class CasbinDecider:
    """Decides with plain ``enforce_ex`` on an enforcer nobody modifies any more."""

    # pycasbin's role managers are not documented as safe to read from several threads.
    thread_safe: ClassVar[bool] = False

    def __init__(self, enforcer: Any, lines: Iterable[PolicyLine] = ()) -> None:
        lines = list(lines)
        self._enforcer = enforcer
        self._number_lines(lines)
        # Casbin's g() holds for a name and itself, so a subject called "admin" would get
        # every grant of the role admin without any binding. Role names are never subjects.
        self._role_names = frozenset(
            line.fields[0] if line.ptype == "p" else line.fields[1]
            for line in lines
            if line.ptype in ("p", "g")
        )
        # pycasbin caches a role manager per workspace it is asked about, forever. Callers
        # pass workspace ids from user requests, so any id no line names is decided as
        # UNLISTED (no line can name it: the validator wants "*" or a UUID); the cache
        # then holds at most one entry per workspace in the files, plus one.
        self._workspaces = frozenset(
            line.fields[1] if line.ptype == "p" else line.fields[2]
            for line in lines
            if line.ptype in ("p", "g")
        ) - {names.ANY_WORKSPACE}
        # Answers already given by this decider, i.e. by this policy version: a reload
        # builds a new decider, so the cache is invalidated by construction. Bounded:
        # emptied when full. The action service asks the same questions over and over.
        self._answers: dict[tuple[str, str, str, str, bool], Decision] = {}

    def _number_lines(self, lines: list[PolicyLine]) -> None:
        """Remember each p line's number in policy.csv, for explanations."""
        # Keyed by the fields tuples pycasbin's model holds anyway (enforcer.py); a
        # duplicate line gets the number of its last copy.
        self._line_numbers = {line.fields: line.number for line in lines if line.ptype == "p"}

    def _domain(self, workspace: str) -> str:
        return workspace if workspace in self._workspaces else UNLISTED_WORKSPACE

    def cached_workspaces(self) -> int:
        """How many workspaces pycasbin holds role caches for (bounded by the files)."""
        return len(self._enforcer.get_role_manager().rm_map)

    def roles(self, subject: str, workspace: str) -> tuple[str, ...]:
        """The subject's roles in the workspace (direct, inherited and ``*``), sorted."""
        return tuple(sorted(self._enforcer.get_implicit_roles_for_user(subject, workspace)))

    def _enforce(
        self, subject: str, domain: str, resource: str, action: str
    ) -> tuple[bool, Sequence[str], int]:
        """(allowed, the explaining p line's fields (empty: none), its number (0: none))."""
        allowed, found = self._enforcer.enforce_ex(subject, domain, resource, action)
        rule = tuple(str(v) for v in found)
        return bool(allowed), rule, self._line_numbers.get(rule, 0)

    def decide(
        self, subject: str, workspace: str, action: str, resource: str, *, explain: bool
    ) -> Decision:
        """Decide one request (remembered per policy version); raises on an evaluation error."""
        key = (subject, workspace, action, resource, explain)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._decide(subject, workspace, action, resource, explain=explain)
            if len(self._answers) >= DECISION_CACHE_SIZE:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _decide(
        self, subject: str, workspace: str, action: str, resource: str, *, explain: bool
    ) -> Decision:
        if subject in self._role_names:
            log.debug("subject %r is a role name; denying", subject)
            return Decision(False, Reason.UNKNOWN_WORKSPACE)
        domain = self._domain(workspace)
        allowed, rule, number = self._enforce(subject, domain, resource, action)
        return self._decision(allowed, rule, number, self.roles(subject, domain), explain=explain)

    def _decision(
        self,
        allowed: bool,
        rule: Sequence[str],
        number: int,
        roles: tuple[str, ...],
        *,
        explain: bool,
    ) -> Decision:
        """The Decision for what ``_enforce`` returned."""
        if allowed:
            reason = Reason.ALLOWED
        elif rule and rule[-1] == "deny":
            reason = Reason.EXPLICIT_DENY
        elif not roles:
            reason = Reason.UNKNOWN_WORKSPACE
        else:
            reason = Reason.NO_MATCHING_RULE
        if reason is Reason.NO_MATCHING_RULE or reason is Reason.UNKNOWN_WORKSPACE:
            rule = ()  # an indeterminate match (never for validated files) decided nothing
        if not explain or not rule:
            return Decision(allowed, reason, roles)
        return Decision(allowed, reason, roles, ", ".join(["p", *rule]), number)

    def decide_resources(
        self, subject: str, workspace: str, action: str, resources: Sequence[str]
    ) -> ResourcesDecision:
        """Decide one subject and permission on each resource (the same answers as
        :meth:`decide` with ``explain``); raises on an evaluation error.

        Bypasses the answer cache: a batch of 10,000 fresh paths would only flush the
        answers the single checks keep asking for.
        """
        if subject in self._role_names:
            denied = Decision(False, Reason.UNKNOWN_WORKSPACE)
            return ResourcesDecision((), [(i, denied) for i in range(len(resources))])
        domain = self._domain(workspace)
        roles = self.roles(subject, domain)
        answers: dict[str, Decision] = {}
        out: list[tuple[int, Decision]] = []
        for i, resource in enumerate(resources):
            answer = answers.get(resource)
            if answer is None:
                allowed, rule, number = self._enforce(subject, domain, resource, action)
                answer = self._decision(allowed, rule, number, roles, explain=True)
                answers[resource] = answer
            if not answer.allowed:
                out.append((i, answer))
        return ResourcesDecision(roles, out)

    def probe(self, subject: str, workspace: str, action: str, resource: str) -> None:
        """Evaluate the matcher once, bypassing every shortcut; raises what pycasbin raises."""
        self._enforcer.enforce_ex(subject, self._domain(workspace), resource, action)

    def warm(self, subject: str) -> None:
        """Build pycasbin's per-workspace role caches now, not on the first live check."""
        for workspace in [*sorted(self._workspaces), UNLISTED_WORKSPACE]:
            self._enforcer.get_implicit_roles_for_user(subject, workspace)
            self._enforcer.enforce(subject, workspace, "fleet", "actions:read")


class IndexedDecider(CasbinDecider):
    """Decides from a ``DecisionIndex``: the same answers as ``CasbinDecider``, in O(matches).

    The enforcer stays for ``probe`` (the loader's matcher check) and as the reference; no
    request touches it, so its per-workspace role caches never grow after the load.
    """

    # The index and role graph are read-only once built: any thread may decide with them.
    thread_safe: ClassVar[bool] = True

    def __init__(self, enforcer: Any, lines: Iterable[PolicyLine], index: DecisionIndex) -> None:
        self._index = index
        super().__init__(enforcer, lines)

    @property
    def index(self) -> DecisionIndex:
        """The index this decider answers from."""
        return self._index

    def _number_lines(self, lines: list[PolicyLine]) -> None:
        """Remember each p line's number by its position in the index (docs/architecture.md
        §7): an array instead of a map from every line's fields.
        """
        self._numbers = _numbers_by_position(self._index, lines)

    def _enforce(
        self, subject: str, domain: str, resource: str, action: str
    ) -> tuple[bool, Sequence[str], int]:
        """(allowed, the explaining p line's fields (empty: none), its number (0: none)):
        the line pycasbin's model holds, not a copy of it per decision.
        """
        allowed, position = self._index.explain(subject, domain, resource, action)
        if position < 0:
            return allowed, (), 0
        return allowed, self._index.policy[position], self._numbers[position]

    def roles(self, subject: str, workspace: str) -> tuple[str, ...]:
        """The subject's roles in the workspace (direct, inherited and ``*``), sorted."""
        return tuple(sorted(self._index.implicit_roles(subject, workspace)))

    def warm(self, subject: str) -> None:
        """Nothing to warm: the index built every role closure the files name."""


def _numbers_by_position(index: DecisionIndex, lines: list[PolicyLine]) -> array[int]:
    """The policy.csv line of each line of ``index.policy``, by position (0: unknown); a
    duplicate line gets the number of its last copy, as ``CasbinDecider`` gives it.
    """
    p_lines = [line for line in lines if line.ptype == "p"]
    policy = index.policy
    if len(p_lines) != len(policy) or any(
        rule is not line.fields for rule, line in zip(policy, p_lines, strict=True)
    ):  # not the lines pycasbin was given (another adapter), or in another order
        by_fields = {line.fields: line.number for line in p_lines}
        return array("l", (by_fields.get(tuple(rule), 0) for rule in policy))
    numbers = array("l", (line.number for line in p_lines))
    for positions in index.equal_lines():
        last = numbers[positions[-1]]
        for position in positions:
            numbers[position] = last
    return numbers


def make_decider(enforcer: Any, lines: Iterable[PolicyLine]) -> CasbinDecider:
    """The indexed decider when the model compiles to an index, else plain ``enforce_ex``."""
    lines = list(lines)
    try:
        # The indexed decider numbers its lines from the index: built inside the try too.
        return IndexedDecider(enforcer, lines, DecisionIndex(enforcer, workspace_matches))
    except Unsupported as exc:
        log.info("deciding with plain pycasbin enforce: %s", exc)
        return CasbinDecider(enforcer, lines)
    except Exception:  # an index bug must never take the service down: fall back
        log.exception("the decision index failed to build; deciding with plain enforce")
        return CasbinDecider(enforcer, lines)
