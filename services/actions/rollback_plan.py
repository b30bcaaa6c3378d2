"""A rollback's plan: which of the original's targets it can still restore, and which were
changed since (superseded) or retired, each with its policy path as of now
(docs/architecture.md §5.5, §5.6).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.actions import store
from services.actions.authorize import Skip
from services.actions.catalog import Change
from services.actions.db import Conn
from services.actions.model import ActionRecord, AgentStatus, Scope, TargetKind
from services.common.names import FLEET_PATH, agent_path, department_path

SUPERSEDED = "superseded"


@dataclass(frozen=True)
class RollbackPlan:
    """The original's changes still restorable (each with its resource's path as of now),
    and the superseded ones (label → the later action, or ``retired``).
    """

    restore: list[Change]
    superseded: dict[str, str]

    def skips(self) -> list[Skip]:
        """The superseded targets as skips."""
        return [
            Skip(label, SUPERSEDED, {"superseded_by": later})
            for label, later in sorted(self.superseded.items())
        ]


def _path(kind: str, owner: asyncpg.Record, departments: dict[str, str]) -> str:
    """The policy path of what an owner row holds: an agent, or a budget of the fleet, a
    department or an agent ("" when that agent is unknown: never checked, never applied).
    """
    if kind == TargetKind.AGENT:
        return agent_path(owner["department_id"], owner["key"])
    if owner["scope"] == Scope.FLEET:
        return FLEET_PATH
    if owner["scope"] == Scope.DEPARTMENT:
        return department_path(owner["target_id"])
    department = departments.get(owner["target_id"])
    return "" if department is None else agent_path(department, owner["target_id"])


async def _owners(
    conn: Conn, kind: str, workspace_id: uuid.UUID, keys: list[str], lock: bool
) -> list[asyncpg.Record]:
    """The current owner rows of the original's targets of one kind, in the fixed lock
    order (agents by agent_id, budgets by scope and target id; locked with ``lock``).
    """
    if kind == TargetKind.AGENT:
        return await store.agents.owners(conn, workspace_id, keys, lock="update" if lock else None)
    return await store.budgets.owners(conn, workspace_id, keys, lock=lock)


async def plan(conn: Conn, original: ActionRecord, *, lock: bool) -> RollbackPlan:
    """Split the original's targets into restorable and superseded (locked with ``lock``)."""
    rows = await store.actions.targets(conn, original.action_id)
    workspace_id = original.workspace_id
    keys = {
        kind: [r["target_key"] for r in rows if r["target_kind"] == kind] for kind in TargetKind
    }
    agent_budgets = [k.partition(":")[2] for k in keys[TargetKind.BUDGET] if k.startswith("agent:")]
    # An agent budget's policy path names the agent's department, so those agents are read
    # first (FOR SHARE under lock: not moved meanwhile).
    departments: dict[str, str] = {}
    if agent_budgets:
        agents = await store.agents.owners(
            conn, workspace_id, agent_budgets, lock="share" if lock else None
        )
        departments = {a["key"]: a["department_id"] for a in agents}
    owners: dict[str, tuple[asyncpg.Record, str]] = {}
    for kind in TargetKind:
        if keys[kind]:
            for row in await _owners(conn, kind, workspace_id, keys[kind], lock):
                owners[f"{kind}/{row['key']}"] = (row, _path(kind, row, departments))
    restore: list[Change] = []
    superseded: dict[str, str] = {}
    for r in rows:
        label = f"{r['target_kind']}/{r['target_key']}"
        owner, path = owners.get(label) or (None, "")
        if owner is not None and owner["status"] == AgentStatus.RETIRED:
            # Retired by the inventory (not an action): never brought back by a rollback.
            superseded[label] = AgentStatus.RETIRED
        elif owner is not None and owner["last_action_id"] == original.action_id:
            restore.append(Change(r["target_kind"], r["target_key"], r["before"], r["after"], path))
        else:
            superseded[label] = str(None if owner is None else owner["last_action_id"])
    return RollbackPlan(restore, superseded)
