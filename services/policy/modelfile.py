"""Checking ``model.conf`` beyond what pycasbin does (it ignores unknown keys and sections).

The model is parsed here line by line so that every problem names ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.policy.problems import Problem

SECTIONS = {
    "request_definition": "r",
    "policy_definition": "p",
    "role_definition": "g",
    "policy_effect": "e",
    "matchers": "m",
}
REQUIRED = ("request_definition", "policy_definition", "policy_effect", "matchers")
SUPPORTED_EFFECTS = (
    "some(where (p.eft == allow))",
    "!some(where (p.eft == deny))",
    "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    "priority(p.eft) || deny",
    "subjectPriority(p.eft) || deny",
)
_SECTION_RE = re.compile(r"^\[(?P<name>[^\]]*)\]$")
_KEY_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*)$")
_G_CALL_RE = re.compile(r"\bg\d*\(")


@dataclass
class ModelFile:
    """What the model defines: ``{"p": ["sub", …]}`` per key, with the lines they were on."""

    definitions: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    key_lines: dict[str, int] = field(default_factory=dict)
    section_lines: dict[str, int] = field(default_factory=dict)

    def tokens(self, ptype: str) -> list[str] | None:
        """The field names of a ``p``/``g`` type (``g``: one ``_`` per field), or None."""
        return self.definitions.get(ptype)

    def ptypes(self) -> list[str]:
        """The policy and role types the model defines (``p``, ``p2``, ``g``, …)."""
        return sorted(k for k in self.definitions if k[0] in "pg")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    r"""Lines without comments, with ``\`` continuations joined; (first line number, text)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if pending is None and (not line or line.startswith(("#", ";"))):
            continue
        if pending is not None:
            line = pending[1] + " " + line
            number = pending[0]
            pending = None
        if line.endswith("\\"):
            pending = (number, line[:-1].rstrip())
            continue
        out.append((number, line))
    if pending is not None:
        out.append(pending)
    return out


def parse_model(text: str, path: str) -> tuple[ModelFile, list[Problem]]:
    """Parse the model text; report unknown sections and keys and missing sections."""
    model = ModelFile()
    problems: list[Problem] = []
    section: str | None = None
    for number, line in _logical_lines(text):
        header = _SECTION_RE.match(line)
        if header:
            section = header.group("name").strip()
            if section not in SECTIONS:
                problems.append(Problem.error(path, number, f"unknown section [{section}]"))
            elif section in model.section_lines:
                problems.append(Problem.error(path, number, f"duplicate section [{section}]"))
            else:
                model.section_lines[section] = number
            continue
        match = _KEY_RE.match(line)
        if section is None or match is None:
            problems.append(Problem.error(path, number, f"not a 'key = value' line: {line!r}"))
            continue
        if section not in SECTIONS:
            continue
        key, value = match.group("key"), match.group("value").strip()
        prefix = SECTIONS[section]
        if not re.fullmatch(rf"{prefix}\d*", key):
            problems.append(
                Problem.error(path, number, f"key {key!r} in [{section}] must be {prefix!r}")
            )
            continue
        if key in model.values:
            problems.append(Problem.error(path, number, f"duplicate key {key!r}"))
            continue
        if not value:
            problems.append(Problem.error(path, number, f"{key} has no value"))
            continue
        model.values[key] = value
        model.key_lines[key] = number
        if prefix in "rpg":
            model.definitions[key] = [t.strip() for t in value.split(",")]
    for name in REQUIRED:
        if name not in model.section_lines:
            problems.append(Problem.error(path, 1, f"missing section [{name}]"))
    matcher = model.values.get("m", "")
    if _G_CALL_RE.search(matcher) and "role_definition" not in model.section_lines:
        problems.append(
            Problem.error(path, 1, "the matcher calls g() but [role_definition] is missing")
        )
    effect = model.values.get("e")
    if effect is not None and " ".join(effect.split()) not in SUPPORTED_EFFECTS:
        problems.append(
            Problem.error(path, model.key_lines["e"], f"unsupported policy effect {effect!r}")
        )
    return model, problems
