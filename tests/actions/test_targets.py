"""Execute's one read before the policy call: the caller's key and the target together."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.actions.store import targets
from tests.actions.helpers import Api
from tests.conftest import NewWorkspace

CASES = [
    ("agent", "eng-code-1", "engineering"),
    ("agent", "nobody", None),
    ("department", "support", "support"),
    ("department", "nowhere", None),
    ("fleet", "", ""),
]


@pytest.mark.parametrize(("scope", "target_id", "department"), CASES)
async def test_keyed_lookup_agrees_with_the_two_lookups(
    api: Api,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
    scope: str,
    target_id: str,
    department: str | None,
) -> None:
    ws = await new_workspace()
    done = await api.execute("bob", ws.id, "pause_agent", target="eng-code-2")
    claimed = await pool.fetchval(
        "SELECT request_id FROM action_audit_log WHERE action_id = $1",
        uuid.UUID(done.action_id),
    )
    async with pool.acquire() as conn:
        for workspace in (ws.id, uuid.uuid4()):
            expected = await targets.look_up(conn, workspace, scope, target_id)
            for subject, request_id, hit in (
                ("bob", claimed, workspace == ws.id),
                ("bob", "never-used", False),
                ("alice", claimed, False),
            ):
                existing, target = await targets.look_up_keyed(
                    conn, workspace, scope, target_id, subject, request_id
                )
                assert target == expected
                if hit:
                    assert existing is not None
                    assert str(existing["action_id"]) == done.action_id
                    assert existing["status"] == "completed"
                else:
                    assert existing is None
        if department is not None:
            found = await targets.look_up(conn, ws.id, scope, target_id)
            assert found is not None
            assert (found.department_id or "") == department
