"""Set-based seeding of the bench database: workspaces, agents and a million audit rows."""

from __future__ import annotations

import uuid

from services.actions.db import Conn

_WORKSPACES = """
INSERT INTO workspaces (id, name)
SELECT w, 'bench-' || w::text FROM unnest($1::uuid[]) AS w"""
_DEPARTMENTS = """
INSERT INTO departments (workspace_id, department_id, name)
SELECT w, 'dept-' || d, 'Department ' || d
FROM unnest($1::uuid[]) AS w, generate_series(0, $2 - 1) AS d"""
_AGENTS = """
INSERT INTO agents (workspace_id, agent_id, department_id)
SELECT w, 'agent-' || a, 'dept-' || (a % $3)
FROM unnest($1::uuid[]) AS w, generate_series(0, $2 - 1) AS a"""
# Completed actions spread over targets, types and actors, one second apart (newest first).
_AUDIT_ROWS = """
INSERT INTO action_audit_log (
    action_id, workspace_id, action_type, scope, target_id, action_params, reason,
    actor_user_id, actor_role, status, result, request_id, request_fingerprint,
    policy_version, decision_id, created_at, started_at, completed_at, can_rollback)
SELECT gen_random_uuid(), $1,
       (ARRAY['pause_agent', 'resume_agent', 'set_budget', 'restart_agent'])[1 + i % 4],
       'agent', 'agent-' || (i % $3), '{"duration_minutes": 30}'::jsonb, 'bulk load',
       'user-' || (i % 50), 'operator', 'completed', '{"count": 1}'::jsonb,
       'bulk-' || i, md5(i::text), 'bench', md5(i::text),
       t, t, t, true
FROM generate_series(1, $2) AS i,
     LATERAL (SELECT now() - make_interval(secs => i)) AS ts(t)"""


def workspace_ids(count: int, tag: int) -> list[uuid.UUID]:
    """Deterministic workspace ids, distinct per ``tag``."""
    return [uuid.UUID(int=(tag << 64) | i, version=4) for i in range(count)]


async def seed_agents(
    conn: Conn, workspaces: list[uuid.UUID], agents: int, departments: int
) -> None:
    """``agents`` agents over ``departments`` departments in each workspace."""
    async with conn.transaction():
        await conn.execute(_WORKSPACES, workspaces)
        await conn.execute(_DEPARTMENTS, workspaces, departments)
        await conn.execute(_AGENTS, workspaces, agents, departments)


async def seed_audit_rows(conn: Conn, workspace: uuid.UUID, rows: int, targets: int) -> None:
    """``rows`` completed audit rows in ``workspace`` over ``targets`` target ids, analysed."""
    await conn.execute(_AUDIT_ROWS, workspace, rows, targets, timeout=1800)
    await conn.execute("ANALYZE action_audit_log")
