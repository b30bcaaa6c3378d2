"""The hash chain: every event chained and verifiable; verification catches tampering."""

from __future__ import annotations

import asyncio

import asyncpg

from services.actions.audit.documents import GENESIS_HASH
from services.actions.audit.verify import verify_workspace
from tests.actions.helpers import Api
from tests.conftest import NewWorkspace


async def test_chain_verifies_and_detects_tampering(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await api.execute("bob", ws.id, "pause_agent", scope="department", target="support")
    await api.rollback("bob", ws.id, pause.action_id)
    async with pool.acquire() as conn:
        report = await verify_workspace(conn, ws.id)
        assert report.breaks == []
        assert report.events == 7
        first = await conn.fetchrow(
            "SELECT seq, prev_hash FROM action_events WHERE workspace_id = $1 ORDER BY seq LIMIT 1",
            ws.id,
        )
        assert first is not None
        assert (first["seq"], first["prev_hash"]) == (1, GENESIS_HASH)

        tx = conn.transaction()
        await tx.start()
        # A rewritten payload breaks its own hash (the trigger is lifted only inside this
        # transaction, which is rolled back).
        await conn.execute("ALTER TABLE action_events DISABLE TRIGGER action_events_no_update")
        await conn.execute(
            "UPDATE action_events SET payload = jsonb_set(payload, '{reason}', '\"edited\"') "
            "WHERE workspace_id = $1 AND seq = 2",
            ws.id,
        )
        broken = await verify_workspace(conn, ws.id)
        assert [(b.kind, b.seq) for b in broken.breaks if b.seq] == [("edited", 2)]
        await tx.rollback()

        tx = conn.transaction()
        await tx.start()
        # A deleted newest event no longer matches the chain head.
        await conn.execute("ALTER TABLE action_events DISABLE TRIGGER action_events_no_update")
        await conn.execute("DELETE FROM action_events WHERE workspace_id = $1 AND seq = 7", ws.id)
        broken = await verify_workspace(conn, ws.id)
        # The chain's end, and the row whose newest event is gone (checked on regardless).
        assert [(b.kind, b.seq) for b in broken.breaks if b.seq] == [("head_mismatch", 7)]
        await tx.rollback()
        assert (await verify_workspace(conn, ws.id)).breaks == []


async def test_one_notify_per_action(
    api: Api, pool: asyncpg.Pool, database_dsn: str, new_workspace: NewWorkspace
) -> None:
    ws, other = await new_workspace(), await new_workspace()
    got: list[str] = []
    listener = await asyncpg.connect(database_dsn)
    try:
        await listener.add_listener("fleetward_events", lambda *args: got.append(args[3]))
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
        # Notifications arrive in commit order: once the other workspace's is here, every
        # one the first action sent is here too.
        await api.execute("bob", other.id, "pause_agent", target="eng-code-1")
        for _ in range(500):
            if str(other.id) in got:
                break
            await asyncio.sleep(0.01)
    finally:
        await listener.close()
    # One transaction (effect, row, targets and events), so one NOTIFY; it was two when the
    # pending row committed on its own.
    assert got == [str(ws.id), str(other.id)]
