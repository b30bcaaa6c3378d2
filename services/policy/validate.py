"""The policy validator: what pycasbin accepts silently, reported as ``file:line: message``.

pycasbin drops lines with an unknown ptype, treats an effect typo (``alow``) as "no
effect", and only fails at check time on a wrong field count. This module catches those,
plus missing model sections, unknown roles (warnings) and, with Fleetward's conventions,
workspaces that are not UUIDs, resource globs outside ``fleet`` and unknown permissions.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from services.common import names
from services.policy.files import PolicyFiles
from services.policy.modelfile import ModelFile, parse_model
from services.policy.problems import Problem

EFFECTS = ("allow", "deny")
FLEETWARD_MODEL = {
    "r": ["sub", "dom", "obj", "act"],
    "p": ["sub", "dom", "obj", "act", "eft"],
    "g": ["_", "_", "_"],
}
ALLOW_AND_DENY = "some(where (p.eft == allow)) && !some(where (p.eft == deny))"
_GLOB_RE = re.compile(r"^fleet(/[a-z0-9._\-*?{},\[\]!]+)*$")
# Where str.splitlines() splits.
_LINE_BREAK = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class PolicyLine:
    """One well-formed policy line: ``ptype`` and its fields, with its line number.

    The strings are interned: a large policy repeats a few thousand names (roles,
    workspaces, globs, effects) over all its lines, and everything built from the lines
    keeps them (docs/architecture.md §7).
    """

    number: int
    ptype: str
    fields: tuple[str, ...]

    def __str__(self) -> str:
        return ", ".join((self.ptype, *self.fields))


@dataclass(frozen=True)
class ValidationResult:
    """The findings, and the lines that are safe to load when there is no error."""

    model: ModelFile
    lines: tuple[PolicyLine, ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> list[Problem]:
        """The problems that make the files unloadable."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors


def split_fields(line: str) -> list[str] | None:
    """Split a policy line on commas outside ``()``/``[]``; None for unbalanced brackets."""
    depth, start, out = 0, 0, []
    for i, char in enumerate(line):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                return None
        elif char == "," and depth == 0:
            out.append(line[start:i].strip())
            start = i + 1
    if depth != 0:
        return None
    out.append(line[start:].strip())
    return out


def validate(files: PolicyFiles, *, conventions: bool = True) -> ValidationResult:
    """Validate a policy directory's model and policy text.

    Args:
        files: The files, read once.
        conventions: Also apply Fleetward's conventions (model shape, workspaces,
            resource globs, permissions). Off for generic Casbin files.

    Returns:
        The findings and the well-formed lines.
    """
    model, problems = parse_model(files.model_text, files.model_path)
    if conventions:
        problems.extend(_check_model_shape(model, files.model_path))
    lines: list[PolicyLine] = []
    for number, raw in enumerate(_text_lines(files.policy_text), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        line, found = _parse_line(model, files.policy_path, number, text, conventions)
        problems.extend(found)
        if line is not None:
            lines.append(line)
    problems.extend(_check_duplicates(lines, files.policy_path))
    if "g" in model.definitions:
        problems.extend(_check_roles(lines, files.policy_path))
    return ValidationResult(model, tuple(lines), tuple(problems))


def _text_lines(text: str) -> Iterator[str]:
    """``text.splitlines()`` one line at a time: the list of a 100,000-line policy's lines
    (13 MB) would live through the whole validation (docs/architecture.md §7).
    """
    start = 0
    for found in _LINE_BREAK.finditer(text):
        yield text[start : found.start()]
        start = found.end()
    if start < len(text):
        yield text[start:]


def _check_model_shape(model: ModelFile, path: str) -> list[Problem]:
    problems = []
    for key, expected in FLEETWARD_MODEL.items():
        actual = model.definitions.get(key)
        if actual is not None and actual != expected:
            problems.append(
                Problem.error(
                    path, model.key_lines[key], f"{key} must be {', '.join(expected)} in Fleetward"
                )
            )
        elif actual is None and key == "g":
            problems.append(Problem.error(path, 1, "missing section [role_definition] (g)"))
    for key in model.values:
        if key[0] in "rpgem" and len(key) > 1:
            problems.append(
                Problem.error(path, model.key_lines[key], f"Fleetward uses only {key[0]!r}")
            )
    effect = model.values.get("e")
    if effect is not None and " ".join(effect.split()) != ALLOW_AND_DENY:
        problems.append(
            Problem.error(path, model.key_lines["e"], f"the policy effect must be {ALLOW_AND_DENY}")
        )
    return problems


def _parse_line(
    model: ModelFile, path: str, number: int, text: str, conventions: bool
) -> tuple[PolicyLine | None, list[Problem]]:
    fields = split_fields(text)
    if fields is None:
        return None, [Problem.error(path, number, "unbalanced brackets")]
    ptype, values = sys.intern(fields[0]), tuple(map(sys.intern, fields[1:]))
    expected = model.tokens(ptype)
    if expected is None:
        known = ", ".join(model.ptypes()) or "none"
        message = f"unknown ptype {ptype!r} (the model defines {known})"
        return None, [Problem.error(path, number, message)]
    if len(values) != len(expected):
        message = (
            f"{ptype} line has {len(values)} fields, the model's {ptype} needs {len(expected)}"
            f" ({', '.join(expected)})"
        )
        return None, [Problem.error(path, number, message)]
    problems = [
        Problem.error(path, number, f"field {i + 1} ({expected[i]}) is empty")
        for i, value in enumerate(values)
        if not value
    ]
    if ptype[0] == "p" and "eft" in expected:
        effect = values[expected.index("eft")]
        if effect not in EFFECTS:
            problems.append(Problem.error(path, number, f"effect {effect!r} is not allow or deny"))
    if conventions and not problems:
        problems.extend(_check_conventions(ptype, values, path, number))
    return (None if problems else PolicyLine(number, ptype, values)), problems


def _check_workspace(value: str, path: str, number: int) -> list[Problem]:
    if value == names.ANY_WORKSPACE or names.normalize_workspace(value) == value:
        return []
    return [Problem.error(path, number, f"workspace {value!r} must be '*' or a lowercase UUID")]


def _check_conventions(
    ptype: str, values: tuple[str, ...], path: str, number: int
) -> list[Problem]:
    if ptype == "g":
        subject, role, workspace = values
        problems = _check_workspace(workspace, path, number)
        if subject == role:
            problems.append(Problem.error(path, number, f"{subject!r} is bound to itself"))
        return problems
    _, workspace, resource, action, _ = values
    problems = _check_workspace(workspace, path, number)
    segments = resource.split("/")
    if not _GLOB_RE.fullmatch(resource) or ".." in segments or "." in segments:
        problems.append(
            Problem.error(
                path,
                number,
                f"resource {resource!r} must be a glob under 'fleet' "
                "(fleet, fleet/**, fleet/departments/<id>/**, …)",
            )
        )
    if not names.is_permission_pattern(action):
        known = ", ".join(sorted(names.known_permissions()))
        problems.append(
            Problem.error(path, number, f"unknown action {action!r} (known: {known}, actions:*)")
        )
    return problems


def _check_duplicates(lines: list[PolicyLine], path: str) -> list[Problem]:
    # Per ptype, keyed by the lines' own fields tuples (no new key per line).
    seen: dict[str, dict[tuple[str, ...], int]] = {}
    problems = []
    for line in lines:
        first = seen.setdefault(line.ptype, {}).setdefault(line.fields, line.number)
        if first != line.number:
            problems.append(Problem.warning(path, line.number, f"duplicate of line {first}"))
    return problems


def _check_roles(lines: list[PolicyLine], path: str) -> list[Problem]:
    granted = {line.fields[0] for line in lines if line.ptype.startswith("p")}
    links = [line for line in lines if line.ptype == "g"]
    parents: dict[str, set[str]] = defaultdict(set)
    for line in links:
        parents[line.fields[0]].add(line.fields[1])
    problems = _check_cycles(parents, links, path)
    bound = {line.fields[1] for line in links}
    effective = set(granted)
    changed = True
    while changed:  # a role that inherits a granted role grants something too
        changed = False
        for child, roles in parents.items():
            if child not in effective and roles & effective:
                effective.add(child)
                changed = True
    reported: set[str] = set()
    for line in links:
        role = line.fields[1]
        if role not in effective and role not in reported:
            reported.add(role)
            message = f"role {role!r} is bound but grants nothing (no p line, no granted parent)"
            problems.append(Problem.warning(path, line.number, message))
    for line in lines:
        role = line.fields[0]
        if line.ptype.startswith("p") and role not in bound and role not in reported:
            reported.add(role)
            message = f"role {role!r} is granted permissions but never bound to anyone"
            problems.append(Problem.warning(path, line.number, message))
    return problems


def _check_cycles(
    parents: dict[str, set[str]], links: list[PolicyLine], path: str
) -> list[Problem]:
    def reaches(start: str, target: str) -> bool:
        stack, seen = [start], set()
        while stack:
            node = stack.pop()
            if node == target:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(parents.get(node, ()))
        return False

    return [
        Problem.error(
            path, line.number, f"role cycle: {line.fields[1]!r} inherits {line.fields[0]!r}"
        )
        for line in links
        if line.fields[0] != line.fields[1] and reaches(line.fields[1], line.fields[0])
    ]
