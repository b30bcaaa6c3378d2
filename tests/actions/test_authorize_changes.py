"""A deny on an agent holds at every scope and through rollback
(docs/architecture.md §5.10), end to end through the real client and servers.

Each attack here succeeded before the rule existed: bob (operator, denied pausing the
``eng-review-*`` agents) paused them by pausing their department, re-paused one by rolling
back someone else's resume, and a role that may pause but not resume shortened an
indefinite pause to one minute so that the scheduler would end it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fleetward.client import (
    FailedPrecondition,
    PauseAgent,
    PermissionDenied,
    ResumeAgent,
    action_result,
)

from services.policy.__main__ import main as policy_main
from tests.actions.guarded import (
    Guarded,
    create_workspace,
    guarded_policy,
    statuses,
)

REVIEWERS = {"eng-review-1", "eng-review-2"}
CODERS = {"eng-code-1", "eng-code-2"}


async def _execute(guarded: Guarded, subject: str, ws: uuid.UUID, **kw: Any) -> Any:
    async with guarded.client(subject) as client:
        return await client.execute(workspace_id=str(ws), reason="incident 42", **kw)


async def _rollback(guarded: Guarded, subject: str, ws: uuid.UUID, **kw: Any) -> Any:
    async with guarded.client(subject) as client:
        return await client.rollback(workspace_id=str(ws), reason="undo it", **kw)


async def _denied_rows(pool: asyncpg.Pool, ws: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM action_audit_log WHERE workspace_id = $1 AND status = 'denied'", ws
        )
    )


async def test_department_pause_is_refused_when_an_agent_in_it_is_denied(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    with pytest.raises(PermissionDenied) as err:
        await _execute(
            guarded, "bob", ws, scope="department", target_id="engineering", params=PauseAgent()
        )
    meta = err.value.metadata
    assert err.value.reason == "INSUFFICIENT_PERMISSIONS"
    assert meta["required_permission"] == "actions:pause_agent"
    assert meta["user_role"] == "operator,viewer"
    assert meta["policy_version"]
    assert meta["denied_count"] == "2"
    assert meta["denied_agent_ids"] == "eng-review-1,eng-review-2"
    assert "eng-review-1" in err.value.message
    assert set((await statuses(pool, ws)).values()) == {"active"}
    [row] = await _denied_rows(pool, ws)
    assert row["scope"] == "department"
    assert row["can_rollback"] is False  # nothing to undo
    stored = json.loads(row["error_details"])
    assert stored["metadata"]["denied_agent_ids"] == "eng-review-1,eng-review-2"
    # A repeat of the same request gets the same refusal back, from the audit row.
    assert row["policy_version"] == meta["policy_version"]


async def test_department_pause_with_skip_denied_pauses_exactly_the_allowed_agents(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    action = await _execute(
        guarded,
        "bob",
        ws,
        scope="department",
        target_id="engineering",
        params=PauseAgent(),
        skip_denied=True,
    )
    result = action_result(action)
    assert {a.agent_id for a in result.agents} == CODERS
    assert {(s.target, s.reason, s.permission) for s in result.skipped} == {
        ("agent/eng-review-1", "denied", "actions:pause_agent"),
        ("agent/eng-review-2", "denied", "actions:pause_agent"),
    }
    assert result.skipped_count == 2
    states = await statuses(pool, ws)
    assert {a for a, s in states.items() if s == "paused"} == CODERS
    targets = await pool.fetch(
        "SELECT target_key FROM action_targets WHERE action_id = $1", uuid.UUID(action.action_id)
    )
    assert {t["target_key"] for t in targets} == CODERS


async def test_fleet_pause_is_refused_or_skips_the_denied_agents(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    with pytest.raises(PermissionDenied) as err:
        await _execute(guarded, "frank", ws, scope="fleet", params=PauseAgent())
    assert err.value.metadata["denied_agent_ids"] == "eng-review-1,eng-review-2"
    assert set((await statuses(pool, ws)).values()) == {"active"}
    action = await _execute(
        guarded, "frank", ws, scope="fleet", params=PauseAgent(), skip_denied=True
    )
    paused = {a for a, s in (await statuses(pool, ws)).items() if s == "paused"}
    assert paused == CODERS | {"sup-chat-1"}
    assert action_result(action).skipped_count == 2


async def test_skip_denied_still_needs_the_target_itself(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    with pytest.raises(PermissionDenied) as err:
        await _execute(guarded, "bob", ws, scope="fleet", params=PauseAgent(), skip_denied=True)
    assert "denied_count" not in err.value.metadata  # the fleet path itself is denied
    with pytest.raises(PermissionDenied):
        await _execute(
            guarded,
            "bob",
            ws,
            scope="agent",
            target_id="eng-review-1",
            params=PauseAgent(),
            skip_denied=True,
        )
    assert set((await statuses(pool, ws)).values()) == {"active"}


async def test_skip_denied_that_leaves_nothing_to_change_is_refused(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(
        pool, {"eng-review-1": "engineering", "eng-review-2": "engineering"}
    )
    with pytest.raises(PermissionDenied):
        await _execute(
            guarded,
            "bob",
            ws,
            scope="department",
            target_id="engineering",
            params=PauseAgent(),
            skip_denied=True,
        )
    assert len(await _denied_rows(pool, ws)) == 1


async def test_validate_only_names_the_agents_that_would_be_denied(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    dept = {"scope": "department", "target_id": "engineering", "params": PauseAgent()}
    with pytest.raises(PermissionDenied) as err:
        await _execute(guarded, "bob", ws, validate_only=True, **dept)
    assert err.value.metadata["denied_agent_ids"] == "eng-review-1,eng-review-2"
    preview = await _execute(guarded, "bob", ws, validate_only=True, skip_denied=True, **dept)
    result = action_result(preview)
    assert {a.agent_id for a in result.agents} == CODERS
    assert {s.target for s in result.skipped} == {"agent/eng-review-1", "agent/eng-review-2"}
    assert await _denied_rows(pool, ws) == []  # a preview writes nothing
    assert set((await statuses(pool, ws)).values()) == {"active"}


async def test_rolling_back_a_resume_needs_pause_on_each_agent_it_re_pauses(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    agent = {"scope": "agent", "target_id": "eng-review-1"}
    await _execute(guarded, "alice", ws, params=PauseAgent(indefinite=True), **agent)
    resume = await _execute(guarded, "alice", ws, params=ResumeAgent(), **agent)
    with pytest.raises(PermissionDenied) as err:
        await _rollback(guarded, "bob", ws, action_id=resume.action_id)
    assert err.value.metadata["required_permission"] == "actions:pause_agent"
    assert err.value.metadata["denied_agent_ids"] == "eng-review-1"
    assert (await statuses(pool, ws))["eng-review-1"] == "active"
    [row] = await _denied_rows(pool, ws)
    assert row["action_type"] == "rollback"
    # alice may: she holds pause on the agent.
    await _rollback(guarded, "alice", ws, action_id=resume.action_id)
    assert (await statuses(pool, ws))["eng-review-1"] == "paused"


async def test_rollback_with_skip_denied_restores_only_what_the_caller_may_change(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    dept = {"scope": "department", "target_id": "engineering"}
    await _execute(guarded, "alice", ws, params=PauseAgent(indefinite=True), **dept)
    resume = await _execute(guarded, "alice", ws, params=ResumeAgent(), **dept)
    with pytest.raises(PermissionDenied) as err:
        await _rollback(guarded, "bob", ws, action_id=resume.action_id)
    assert err.value.metadata["denied_count"] == "2"
    undo = await _rollback(
        guarded, "bob", ws, action_id=resume.action_id, skip_denied=True, skip_superseded=True
    )
    result = action_result(undo)
    assert {a.agent_id for a in result.agents} == CODERS
    assert {(s.target, s.reason) for s in result.skipped} == {
        ("agent/eng-review-1", "denied"),
        ("agent/eng-review-2", "denied"),
    }
    states = await statuses(pool, ws)
    assert {a for a, s in states.items() if s == "paused"} == CODERS


async def test_undoing_a_pause_needs_resume_on_each_agent(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    pause = await _execute(
        guarded, "paula", ws, scope="department", target_id="engineering", params=PauseAgent()
    )
    # frank may roll back and resume: allowed.
    with pytest.raises(PermissionDenied) as err:
        await _rollback(guarded, "paula", ws, action_id=pause.action_id)
    assert err.value.metadata["required_permission"] == "actions:rollback"
    await _rollback(guarded, "frank", ws, action_id=pause.action_id)
    assert set((await statuses(pool, ws)).values()) == {"active"}


async def test_a_pause_never_shortens_or_ends_another_pause(
    guarded: Guarded, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    agent = {"scope": "agent", "target_id": "eng-code-1"}
    await _execute(guarded, "alice", ws, params=PauseAgent(indefinite=True), **agent)
    # paula may pause but not resume: re-pausing for a minute would let the scheduler end it.
    for params in (PauseAgent(duration_minutes=1), PauseAgent(indefinite=True)):
        with pytest.raises(FailedPrecondition) as err:
            await _execute(guarded, "paula", ws, params=params, **agent)
        assert err.value.reason == "ALREADY_IN_STATE"
    until = await pool.fetchval(
        "SELECT paused_until FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-1'", ws
    )
    assert until is None  # still indefinite
    # A timed pause is only ever extended.
    other = {"scope": "agent", "target_id": "eng-code-2"}
    await _execute(guarded, "alice", ws, params=PauseAgent(duration_minutes=60), **other)
    with pytest.raises(FailedPrecondition):
        await _execute(guarded, "paula", ws, params=PauseAgent(duration_minutes=10), **other)
    longer = await _execute(guarded, "paula", ws, params=PauseAgent(duration_minutes=120), **other)
    assert action_result(longer).agents[0].previous_status == "paused"
    forever = await _execute(guarded, "paula", ws, params=PauseAgent(indefinite=True), **other)
    assert action_result(forever).agents[0].resume_at is None


def test_guard_lines_are_a_valid_policy(tmp_path: Path) -> None:
    assert policy_main(["validate", str(guarded_policy(tmp_path))]) == 0
