"""A large, valid, deterministic Fleetward policy: N ``p`` lines and M ``g`` links.

Shaped like an enterprise tenant base: per-workspace team roles with department and
agent grants, wildcard actions, denies on agent globs (``?``, ``[0-9]``, ``*``),
role inheritance inside a workspace and across ``*``, platform-wide bindings, and one
inheritance chain deeper than pycasbin's 10-level limit. Used by the equivalence tests
and by ``make bench``.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.common.names import action_types

DEMO_POLICY_DIR = Path(__file__).resolve().parents[1] / "policies"
PERMISSIONS = ("actions:read", "actions:rollback", *(f"actions:{t}" for t in action_types()))
CHAIN = 12  # deeper than pycasbin's max_hierarchy_level (10)


@dataclass(frozen=True)
class GeneratedPolicy:
    """The lines, and the names a request generator should draw from."""

    lines: tuple[str, ...]
    workspaces: tuple[str, ...]
    subjects: tuple[str, ...]
    roles: tuple[str, ...]
    departments: tuple[str, ...]
    agents: tuple[str, ...]


def _resource_glob(rng: random.Random, department: str, agents: list[str]) -> str:
    shapes = [
        f"fleet/departments/{department}/**",
        f"fleet/departments/{department}",
        f"fleet/departments/{department}/agents/*",
        f"fleet/departments/{department}/agents/{rng.choice(agents)}",
        f"fleet/departments/{department}/agents/{rng.choice(agents)[:-1]}?",
        f"fleet/departments/{department}/agents/{rng.choice(agents)[:-1]}[0-9]",
        f"fleet/departments/{department}/agents/{rng.choice(agents)[:-2]}*",
        "fleet/**",
        "fleet",
        "fleet/departments/*/agents/*",
    ]
    return rng.choice(shapes)


def generate(rules: int = 10_000, links: int = 1_000, seed: int = 7) -> GeneratedPolicy:
    """A policy with exactly ``rules`` p lines and ``links`` g lines (deterministic)."""
    rng = random.Random(seed)
    workspaces = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200)]
    departments = [f"dept-{i}" for i in range(40)]
    agents = [f"agent-{i}{j}" for i in range(20) for j in range(10)]
    teams = [f"team-{i}" for i in range(30)]
    lines = [
        "p, viewer, *, fleet/**, actions:read, allow",
        "p, viewer, *, fleet, actions:read, allow",
        "p, operator, *, fleet/departments/**, actions:pause_agent, allow",
        "p, operator, *, fleet/**, actions:rollback, allow",
        "p, operator, *, fleet/departments/dept-1/agents/agent-1?, actions:pause_agent, deny",
        "p, admin, *, fleet/**, actions:*, allow",
        "p, chain-9, *, fleet/**, actions:restart_agent, allow",
        "p, chain-8, *, fleet/departments/**, actions:set_budget, allow",
    ]
    while len(lines) < rules:
        workspace = rng.choice(workspaces)
        team = rng.choice(teams)
        department = rng.choice(departments)
        action = rng.choice([*PERMISSIONS, "actions:*"])
        effect = "deny" if rng.random() < 0.15 else "allow"
        glob = _resource_glob(rng, department, agents)
        lines.append(f"p, {team}, {workspace}, {glob}, {action}, {effect}")
    users = [f"user-{i}" for i in range(600)]
    g_lines = [f"g, chain-{i}, chain-{i + 1}, *" for i in range(CHAIN)]
    g_lines += ["g, operator, viewer, *", "g, sre-0, viewer, *", "g, sre-1, chain-0, *"]
    g_lines += [f"g, {team}, viewer, *" for team in teams[:10]]
    while len(g_lines) < links:
        workspace = rng.choice(workspaces)
        if rng.random() < 0.1:
            parent, child = sorted(rng.sample(teams, 2))  # sorted: no cycles
            g_lines.append(f"g, {child}, {parent}, {workspace}")
        else:
            role = rng.choice([*teams, "operator", "admin", "viewer", "chain-0"])
            g_lines.append(f"g, {rng.choice(users)}, {role}, {workspace}")
    subjects = (*users, "sre-0", "sre-1")
    roles = (*teams, "viewer", "operator", "admin", *(f"chain-{i}" for i in range(CHAIN + 1)))
    return GeneratedPolicy(
        lines=tuple(lines[:rules] + g_lines[:links]),
        workspaces=tuple(workspaces),
        subjects=subjects,
        roles=roles,
        departments=tuple(departments),
        agents=tuple(agents),
    )


def small(admin: str) -> GeneratedPolicy:
    """The bench's 50-line policy (60 links) with ``admin`` holding ``admin`` everywhere."""
    policy = generate(rules=50, links=60, seed=11)
    return dataclasses.replace(policy, lines=(*policy.lines, f"g, {admin}, admin, *"))


def write_policy_dir(directory: Path, policy: GeneratedPolicy) -> Path:
    """``directory`` with the demo ``model.conf`` and the generated ``policy.csv``."""
    directory.mkdir(parents=True, exist_ok=True)
    model = (DEMO_POLICY_DIR / "model.conf").read_text()
    (directory / "model.conf").write_text(model)
    (directory / "policy.csv").write_text("\n".join(policy.lines) + "\n")
    return directory
