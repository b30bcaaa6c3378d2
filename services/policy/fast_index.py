"""A decision index built once per policy load: ``enforce_ex`` without scanning every line.

pycasbin evaluates the matcher against every ``p`` line. This module compiles matchers
that are conjunctions of clauses it understands into a hash index over the lines:

- ``g(r.a, p.b[, r.c])``: the line's ``p.b`` must be one of the names ``r.a`` reaches;
- ``r.a == p.b``: the line's ``p.b`` must equal the request value;
- ``(p.b == "*" || p.b == r.a)``: ``p.b`` must be ``*`` or the request value;
- ``keyMatch(r.a, p.b)``: equal, or, for a pattern with ``*``, a prefix test;
- ``globMatch(r.a, p.b)``: a glob compiled at load time (``fast_patterns.py``).

A request then looks up only the lines whose key values it can match, tests the rest of
their clauses, and combines the effects exactly as pycasbin's effector does, including
which line it reports. Anything else (another effect, function, role manager or matcher
shape) is :class:`Unsupported`, and the service decides with plain ``enforce_ex``.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from casbin.effect import AllowAndDenyEffector, AllowOverrideEffector, DenyOverrideEffector
from casbin.util import builtin_operators

from services.policy.fast_patterns import casbin_glob, prefix_test
from services.policy.fast_roles import RoleGraph, UnsupportedRoles

Check = tuple[int, Callable[[str], bool]]  # (request field, test of its value)
Part = tuple[str, int, int]  # (kind, request field, policy field)
_ALLOW, _DENY, _OTHER = 0, 1, 2


class Unsupported(Exception):
    """The model or enforcer is outside what the index reproduces exactly."""


def _field(node: ast.expr, tokens: Sequence[str], prefix: str) -> int:
    if isinstance(node, ast.Name) and node.id.startswith(prefix) and node.id in tokens:
        return list(tokens).index(node.id)
    raise Unsupported(f"expected a {prefix}… field, got {ast.unparse(node)}")


def _is_star(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == "*"


class _Compiler:
    """Turns the matcher's clauses into key parts, residual checks and one role clause."""

    def __init__(self, r_tokens: Sequence[str], p_tokens: Sequence[str]) -> None:
        self.r_tokens, self.p_tokens = r_tokens, p_tokens
        self.parts: list[Part] = []
        self.globs: list[tuple[int, int]] = []
        self.role: tuple[int, int, int | None] | None = None

    def _r(self, node: ast.expr) -> int:
        return _field(node, self.r_tokens, "r_")

    def _p(self, node: ast.expr) -> int:
        return _field(node, self.p_tokens, "p_")

    def clause(self, node: ast.expr) -> None:
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for value in node.values:
                self.clause(value)
        elif isinstance(node, ast.Compare):
            self._equality(node)
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            self._star_or_equal(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            self._call(node.func.id, node.args)
        else:
            raise Unsupported(f"clause {ast.unparse(node)}")

    def _sides(self, node: ast.expr) -> tuple[ast.expr, ast.expr]:
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
            raise Unsupported(f"clause {ast.unparse(node)}")
        if not isinstance(node.ops[0], ast.Eq):
            raise Unsupported(f"operator in {ast.unparse(node)}")
        return node.left, node.comparators[0]

    def _equality(self, node: ast.Compare) -> None:
        left, right = self._sides(node)
        if isinstance(left, ast.Name) and left.id.startswith("p_"):
            left, right = right, left
        self.parts.append(("eq", self._r(left), self._p(right)))

    def _star_or_equal(self, node: ast.BoolOp) -> None:
        sides = [self._sides(v) for v in node.values] if len(node.values) == 2 else []
        stars = [s for s in sides if _is_star(s[0]) or _is_star(s[1])]
        if len(stars) != 1:
            raise Unsupported(f"clause {ast.unparse(node)}")
        star_side = stars[0]
        left, right = sides[1] if star_side is sides[0] else sides[0]
        if isinstance(left, ast.Name) and left.id.startswith("p_"):
            left, right = right, left
        p_index = self._p(star_side[1] if _is_star(star_side[0]) else star_side[0])
        if self._p(right) != p_index:
            raise Unsupported(f"clause {ast.unparse(node)} compares two policy fields")
        self.parts.append(("star", self._r(left), p_index))

    def _call(self, name: str, args: list[ast.expr]) -> None:
        if name == "g" and len(args) in (2, 3) and self.role is None:
            domain = self._r(args[2]) if len(args) == 3 else None
            self.role = (self._r(args[0]), self._p(args[1]), domain)
            self.parts.append(("role", self._r(args[0]), self._p(args[1])))
        elif name == "keyMatch" and len(args) == 2:
            self.parts.append(("key", self._r(args[0]), self._p(args[1])))
        elif name == "globMatch" and len(args) == 2:
            self.globs.append((self._r(args[0]), self._p(args[1])))
        else:
            raise Unsupported(f"function {name}() with {len(args)} arguments")


_Entry = tuple[int, int, tuple[Check, ...]]  # (line index, effect, residual checks)


def _check_functions_and_types(enforcer: Any, model: Any) -> None:
    """Refuse replaced matching functions, several policy types and conditional roles."""
    functions = enforcer.fm.get_functions()
    if (
        functions.get("keyMatch") is not builtin_operators.key_match_func
        or functions.get("globMatch") is not builtin_operators.glob_match_func
    ):
        raise Unsupported("keyMatch or globMatch was replaced")
    if set(model.get("p", {})) != {"p"} or getattr(enforcer, "cond_rm_map", None):
        raise Unsupported("only one policy type and no conditional roles")


def _compile_matcher(matcher: str, r_tokens: Sequence[str], p_tokens: Sequence[str]) -> _Compiler:
    """The matcher's clauses, compiled (pycasbin's own rewriting of ``&&``, ``||``, ``!``)."""
    compiler = _Compiler(r_tokens, p_tokens)
    prepared = re.sub(r"!(?!=)", "not ", matcher.replace("&&", "and").replace("||", "or"))
    try:
        tree = ast.parse(prepared.strip(), mode="eval").body
    except SyntaxError as exc:
        raise Unsupported(f"matcher does not parse: {exc}") from exc
    compiler.clause(tree)
    return compiler


def _role_graph(
    rm_map: Any,
    star_matcher: Callable[[str, str], bool] | None,
    role: tuple[int, int, int | None] | None,
) -> RoleGraph:
    """The ``g`` links as a ``RoleGraph`` (none without ``g``), matching the ``g()`` clause."""
    roles = RoleGraph({None: {}}, None, 10, domains=False)  # no g: no links
    if set(rm_map) - {"g"}:
        raise Unsupported("role types other than g")
    if "g" in rm_map:
        try:
            roles = RoleGraph.from_manager(rm_map["g"], star_matcher)
        except UnsupportedRoles as exc:
            raise Unsupported(str(exc)) from exc
    if role is not None and ("g" not in rm_map or roles.domains != (role[2] is not None)):
        raise Unsupported("g() arity differs from the role definition")
    return roles


class _Shared:
    """One object per distinct test and per distinct list of checks, however many lines
    share it: the 100,000-line growth policy has 9,480 distinct check lists for its 90,000
    p lines, and a test or a list per line was a third of the index.
    """

    def __init__(self) -> None:
        self._tests: dict[tuple[str, str], Callable[[str], bool]] = {}
        self._checks: dict[tuple[Check, ...], tuple[Check, ...]] = {}

    def test(self, kind: str, pattern: str) -> Callable[[str], bool]:
        """The compiled ``glob`` or ``prefix`` test of ``pattern``, compiled once."""
        found = self._tests.get((kind, pattern))
        if found is None:
            if kind == "prefix":
                found = prefix_test(pattern)
            else:
                try:
                    found = casbin_glob(pattern)
                except Exception as exc:  # pycasbin would raise at check time
                    raise Unsupported(f"glob {pattern!r}: {exc}") from exc
            self._tests[(kind, pattern)] = found
        return found

    def checks(self, checks: list[Check]) -> tuple[Check, ...]:
        """``checks`` as a tuple, the same tuple for every line with the same checks."""
        found = tuple(checks)
        return self._checks.setdefault(found, found)


def _line_checks(
    rule: Sequence[str],
    parts: Sequence[Part],
    glob_fields: Sequence[tuple[int, int]],
    shared: _Shared,
) -> tuple[tuple[str | None, ...], tuple[Check, ...]]:
    """One line's bucket key and residual checks."""
    checks: list[Check] = []
    key: list[str | None] = []
    for kind, r_field, p_field in parts:
        value = rule[p_field]
        if kind == "key" and "*" in value:
            key.append(None)
            checks.append((r_field, shared.test("prefix", value[: value.index("*")])))
        else:
            key.append(value)
    for r_field, p_field in glob_fields:
        checks.append((r_field, shared.test("glob", rule[p_field])))
    return tuple(key), shared.checks(checks)


class DecisionIndex:
    """``enforce_ex`` and implicit roles for one enforcer, from hash lookups."""

    def __init__(self, enforcer: Any, star_matcher: Callable[[str, str], bool] | None) -> None:
        """Compile the enforcer's model and index its ``p`` lines.

        Raises:
            Unsupported: When the result could differ from ``enforcer.enforce_ex``.
        """
        model = enforcer.model.model
        self._effector = self._effector_kind(enforcer.eft)
        _check_functions_and_types(enforcer, model)
        r_tokens, p_tokens = model["r"]["r"].tokens, model["p"]["p"].tokens
        self._r_count = len(r_tokens)
        compiler = _compile_matcher(model["m"]["m"].value, r_tokens, p_tokens)
        self._parts = tuple(compiler.parts)
        self._role = compiler.role
        self._role_domain = compiler.role[2] if compiler.role else None
        self.roles = _role_graph(enforcer.rm_map, star_matcher, compiler.role)
        self.policy: Sequence[Sequence[str]] = model["p"]["p"].policy
        if not self.policy:
            raise Unsupported("an empty policy (pycasbin evaluates the matcher once)")
        self._buckets = self._index_lines(p_tokens, compiler.globs)

    def _index_lines(
        self, p_tokens: Sequence[str], glob_fields: Sequence[tuple[int, int]]
    ) -> dict[tuple[str | None, ...], list[_Entry]]:
        """Each ``p`` line under the key values a request must match to reach it."""
        eft = p_tokens.index("p_eft") if "p_eft" in p_tokens else None
        shared = _Shared()
        buckets: dict[tuple[str | None, ...], list[_Entry]] = {}
        for index, rule in enumerate(self.policy):
            if len(rule) != len(p_tokens):
                raise Unsupported("a policy line has the wrong size")
            key, checks = _line_checks(rule, self._parts, glob_fields, shared)
            effect = _ALLOW
            if eft is not None:
                effect = {"allow": _ALLOW, "deny": _DENY}.get(rule[eft], _OTHER)
            buckets.setdefault(key, []).append((index, effect, checks))
        return buckets

    @staticmethod
    def _effector_kind(effector: Any) -> str:
        for kind in (AllowAndDenyEffector, AllowOverrideEffector, DenyOverrideEffector):
            if type(effector) is kind:
                return kind.__name__
        raise Unsupported(f"effect {type(effector).__name__}")

    def _choices(self, rvals: Sequence[str]) -> list[tuple[str | None, ...]]:
        choices: list[tuple[str | None, ...]] = []
        for kind, r_field, _ in self._parts:
            value = rvals[r_field]
            if kind == "eq":
                choices.append((value,))
            elif kind == "star":
                choices.append(("*",) if value == "*" else ("*", value))
            elif kind == "key":
                choices.append((value, None))
            else:  # role
                domain = "" if self._role_domain is None else rvals[self._role_domain]
                choices.append(tuple(self.roles.closure(value, domain)[0]))
        return choices

    def enforce_ex(self, *rvals: str) -> tuple[bool, list[str]]:
        """What ``enforcer.enforce_ex(*rvals)`` returns: (allowed, the explaining line)."""
        allowed, position = self.explain(*rvals)
        return allowed, self.rule(position)

    def explain(self, *rvals: str) -> tuple[bool, int]:
        """``enforce_ex`` with the explaining line's position in ``policy`` (-1: none)."""
        if len(rvals) != self._r_count:
            raise RuntimeError("invalid request size")
        first_allow = first_deny = last = -1
        for key in itertools.product(*self._choices(rvals)):
            for index, effect, checks in self._buckets.get(key, ()):
                if all(test(rvals[field]) for field, test in checks):
                    last = max(last, index)
                    if effect == _ALLOW and (first_allow < 0 or index < first_allow):
                        first_allow = index
                    elif effect == _DENY and (first_deny < 0 or index < first_deny):
                        first_deny = index
        return self._combine(first_allow, first_deny, last)

    def _combine(self, first_allow: int, first_deny: int, last: int) -> tuple[bool, int]:
        # pycasbin walks lines in order, records each match and stops at the first match
        # whose intermediate effect decides: a deny (deny-override kinds) or an allow.
        if self._effector == "AllowOverrideEffector":
            if first_allow >= 0:
                return True, first_allow
            return False, last
        if first_deny >= 0:
            return False, first_deny
        if self._effector == "DenyOverrideEffector":
            return True, last
        return first_allow >= 0, last

    def rule(self, position: int) -> list[str]:
        """The line at ``position`` as pycasbin's file adapter holds it (a list); [] for -1."""
        return list(self.policy[position]) if position >= 0 else []

    def equal_lines(self) -> Iterator[list[int]]:
        """The positions of lines equal to each other (duplicates), one group at a time,
        each in order: equal lines have equal keys, so one bucket holds them all.
        """
        for bucket in self._buckets.values():
            if len(bucket) < 2:
                continue
            groups: dict[tuple[str, ...], list[int]] = {}
            for index, _, _ in bucket:
                groups.setdefault(tuple(self.policy[index]), []).append(index)
            yield from (group for group in groups.values() if len(group) > 1)

    def implicit_roles(self, subject: str, domain: str) -> tuple[str, ...]:
        """What ``enforcer.get_implicit_roles_for_user(subject, domain)`` returns (as a set)."""
        return self.roles.closure(subject, domain)[1]
