"""The invariant checker of the reliability suite (issue 8): what must hold after any run.

For each workspace checked:

* **replay** — every agent's ``status``, ``paused_until``, ``generation``,
  ``restart_requested_at`` and ``last_action_id``, and every budget, equal what applying
  the ``after`` of each committed action's ``action_targets`` in commit order says
  (commit order = the ``seq`` of its ``action.completed`` event,
  docs/architecture.md §6). Agents retired by the inventory are outside the actions'
  control and are skipped.
* **orphan** — no ``pending``/``in_progress`` action whose advisory lock
  (docs/architecture.md §5.7) is free, i.e. none without a live executor.
* **events** — each action's events are exactly those of its status history
  (``pending`` → ``in_progress`` → ``completed`` [→ ``rolled_back``], ``pending`` →
  ``failed``, ``denied``), in order, each snapshot carrying its event's status.
* **rollback** — a ``rolled_back`` action and the completed rollback that undid it name
  each other (``rollback_action_id`` / ``rollback_of_action_id``).
* **chain** — ``audit verify``'s :func:`services.actions.audit.verify.verify_workspace` finds
  nothing (the chain, and every row and its targets against it).
* **idempotency** — every ``(workspace, actor, request_id)`` has exactly one action.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.actions.action_lock import lock_key
from services.actions.audit.documents import iso
from services.actions.audit.verify import verify_workspace
from services.actions.db import Conn

AgentState = dict[str, Any]

SELECT_WORKSPACES = "SELECT id FROM workspaces ORDER BY id"

SELECT_COMMITTED = """
SELECT e.seq, a.action_id, t.target_kind, t.target_key, t.after
FROM action_events e
JOIN action_audit_log a ON a.action_id = e.action_id
JOIN action_targets t ON t.action_id = e.action_id
WHERE e.workspace_id = $1 AND e.event_type = 'action.completed'
ORDER BY e.seq, t.target_kind, t.target_key"""

SELECT_AGENTS = """
SELECT agent_id, status, paused_until, generation, restart_requested_at, last_action_id
FROM agents WHERE workspace_id = $1"""

SELECT_BUDGETS = """
SELECT scope || ':' || target_id AS key, monthly_limit_cents, last_action_id
FROM budgets WHERE workspace_id = $1"""

SELECT_UNFINISHED = """
SELECT action_id FROM action_audit_log
WHERE workspace_id = $1 AND status IN ('pending', 'in_progress')"""

SELECT_STATUS = "SELECT status FROM action_audit_log WHERE action_id = $1"

SELECT_HISTORIES = """
SELECT a.action_id, a.status,
       coalesce(array_agg(e.event_type ORDER BY e.seq) FILTER (WHERE e.seq IS NOT NULL),
                '{}') AS types,
       coalesce(array_agg(e.payload ->> 'status' ORDER BY e.seq)
                FILTER (WHERE e.seq IS NOT NULL), '{}') AS snapshot_statuses
FROM action_audit_log a
LEFT JOIN action_events e ON e.action_id = a.action_id AND e.workspace_id = a.workspace_id
WHERE a.workspace_id = $1
GROUP BY a.action_id, a.status"""

SELECT_STRAY_EVENTS = """
SELECT e.seq FROM action_events e
LEFT JOIN action_audit_log a ON a.action_id = e.action_id AND a.workspace_id = e.workspace_id
WHERE e.workspace_id = $1 AND a.action_id IS NULL"""

# Rolled-back originals and completed rollbacks must name each other.
SELECT_UNPAIRED_ROLLBACKS = """
SELECT o.action_id, o.status, o.rollback_action_id, r.action_id AS rollback_id
FROM action_audit_log o
FULL JOIN (SELECT * FROM action_audit_log
           WHERE workspace_id = $1 AND action_type = 'rollback' AND status = 'completed') r
  ON r.rollback_of_action_id = o.action_id
WHERE o.workspace_id = $1
  AND (o.status = 'rolled_back' OR r.action_id IS NOT NULL)
  AND (o.status IS DISTINCT FROM 'rolled_back' OR r.action_id IS NULL
       OR o.rollback_action_id IS DISTINCT FROM r.action_id)"""

SELECT_DUPLICATE_KEYS = """
SELECT actor_user_id, request_id, count(*) AS n FROM action_audit_log
WHERE workspace_id = $1 GROUP BY actor_user_id, request_id HAVING count(*) > 1"""

# The event types an action's history must consist of, by its current status.
HISTORY: dict[str, tuple[tuple[str, ...], ...]] = {
    "pending": (("pending",),),
    "in_progress": (("pending", "in_progress"),),
    "completed": (("pending", "in_progress", "completed"),),
    "rolled_back": (("pending", "in_progress", "completed", "rolled_back"),),
    "failed": (("pending", "failed"),),
    "denied": (("denied",),),
}
# What replay starts from: an agent as the inventory creates it.
INITIAL_AGENT: AgentState = {
    "status": "active",
    "paused_until": None,
    "generation": 0,
    "restart_requested_at": None,
    "last_action_id": None,
}


@dataclass(frozen=True)
class Violation:
    """One broken invariant."""

    kind: str  # replay | orphan | events | rollback | chain | idempotency
    workspace_id: uuid.UUID
    detail: str


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _replay(conn: Conn, ws: uuid.UUID) -> list[Violation]:
    agents: dict[str, AgentState] = {}
    budgets: dict[str, AgentState] = {}
    for row in await conn.fetch(SELECT_COMMITTED, ws):
        after = dict(_json(row["after"]))
        after["last_action_id"] = str(row["action_id"])
        if row["target_kind"] == "agent":
            agents.setdefault(row["target_key"], dict(INITIAL_AGENT)).update(after)
        else:
            budgets.setdefault(row["target_key"], {}).update(after)
    out: list[Violation] = []
    for row in await conn.fetch(SELECT_AGENTS, ws):
        if row["status"] == "retired":
            continue  # retired by the inventory, not by an action
        expected = agents.get(row["agent_id"], INITIAL_AGENT)
        actual = {
            "status": row["status"],
            "paused_until": iso(row["paused_until"]),
            "generation": int(row["generation"]),
            "restart_requested_at": iso(row["restart_requested_at"]),
            "last_action_id": None if row["last_action_id"] is None else str(row["last_action_id"]),
        }
        wrong = {k: (actual[k], expected[k]) for k in actual if actual[k] != expected.get(k)}
        if wrong:
            out.append(
                Violation("replay", ws, f"agent {row['agent_id']}: {wrong} (actual, replay)")
            )
    seen: set[str] = set()
    for row in await conn.fetch(SELECT_BUDGETS, ws):
        seen.add(row["key"])
        want = budgets.get(row["key"], {"monthly_limit_cents": None, "last_action_id": None})
        got = {
            "monthly_limit_cents": row["monthly_limit_cents"],
            "last_action_id": None if row["last_action_id"] is None else str(row["last_action_id"]),
        }
        if got != want:
            out.append(Violation("replay", ws, f"budget {row['key']}: {got} != replay {want}"))
    for key in sorted(set(budgets) - seen):
        out.append(Violation("replay", ws, f"budget {key} missing; replay says {budgets[key]}"))
    return out


async def _orphans(conn: Conn, ws: uuid.UUID) -> list[Violation]:
    out: list[Violation] = []
    for row in await conn.fetch(SELECT_UNFINISHED, ws):
        key = lock_key(row["action_id"])
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            continue  # a live executor holds it
        try:
            status = await conn.fetchval(SELECT_STATUS, row["action_id"])
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
        if status in ("pending", "in_progress"):
            detail = f"action {row['action_id']} is {status} with no live executor"
            out.append(Violation("orphan", ws, detail))
    return out


async def _events(conn: Conn, ws: uuid.UUID) -> list[Violation]:
    out: list[Violation] = []
    for row in await conn.fetch(SELECT_HISTORIES, ws):
        types = tuple(t.removeprefix("action.") for t in row["types"])
        if types not in HISTORY[row["status"]]:
            detail = f"action {row['action_id']} is {row['status']} with events {list(types)}"
            out.append(Violation("events", ws, detail))
        elif tuple(row["snapshot_statuses"]) != types:
            detail = f"action {row['action_id']}: snapshots {row['snapshot_statuses']} != {types}"
            out.append(Violation("events", ws, detail))
    for row in await conn.fetch(SELECT_STRAY_EVENTS, ws):
        out.append(Violation("events", ws, f"event seq {row['seq']} names no action of it"))
    return out


async def _chain(conn: Conn, ws: uuid.UUID) -> list[Violation]:
    report = await verify_workspace(conn, ws)
    return [Violation("chain", ws, str(found)) for found in report.breaks]


async def _rollbacks(conn: Conn, ws: uuid.UUID) -> list[Violation]:
    return [
        Violation(
            "rollback",
            ws,
            f"action {r['action_id']} is {r['status']} with rollback_action_id "
            f"{r['rollback_action_id']}; completed rollback {r['rollback_id']}",
        )
        for r in await conn.fetch(SELECT_UNPAIRED_ROLLBACKS, ws)
    ]


async def _keys(conn: Conn, ws: uuid.UUID) -> list[Violation]:
    return [
        Violation("idempotency", ws, f"{r['actor_user_id']}/{r['request_id']}: {r['n']} actions")
        for r in await conn.fetch(SELECT_DUPLICATE_KEYS, ws)
    ]


async def check_invariants(
    conn: Conn, workspaces: Iterable[uuid.UUID] | None = None
) -> list[Violation]:
    """Every broken invariant of ``workspaces`` (default: all of them); empty when sound.

    Run it when the system is quiet (no action in flight): an in-flight action holds its
    lock and is not an orphan, but its effect is not committed yet either.
    """
    ids = (
        list(workspaces)
        if workspaces is not None
        else [r["id"] for r in await conn.fetch(SELECT_WORKSPACES)]
    )
    out: list[Violation] = []
    for ws in ids:
        for check in (_replay, _orphans, _events, _rollbacks, _chain, _keys):
            out.extend(await check(conn, ws))
    return out


async def expect_one_action_per_request(
    conn: Conn, ws: uuid.UUID, subject: str, request_ids: Iterable[str]
) -> list[Violation]:
    """Violations for request ids of ``subject`` that have no action or more than one."""
    wanted = list(request_ids)
    rows = await conn.fetch(
        "SELECT request_id, count(*) AS n FROM action_audit_log "
        "WHERE workspace_id = $1 AND actor_user_id = $2 AND request_id = ANY($3::text[]) "
        "GROUP BY request_id",
        ws,
        subject,
        wanted,
    )
    counts = {r["request_id"]: int(r["n"]) for r in rows}
    return [
        Violation("idempotency", ws, f"{subject}/{rid}: {counts.get(rid, 0)} actions")
        for rid in wanted
        if counts.get(rid, 0) != 1
    ]
