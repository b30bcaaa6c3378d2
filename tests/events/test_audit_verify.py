"""``audit verify`` catches an edited, deleted (also the newest), reordered or re-linked event."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

import asyncpg
import pytest

from services.actions.audit import documents
from services.actions.audit.verify import verify
from tests.events.conftest import IsolatedDb

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Three actions = nine events (pending, in_progress, completed each).
EVENTS = 9


async def history(db: IsolatedDb) -> uuid.UUID:
    """A workspace with a chain of nine events (in this module's own database)."""
    ws = await db.new_workspace()
    for agent in ("eng-code-1", "eng-code-2", "sup-chat-1"):
        await db.api.execute("bob", ws, "pause_agent", target=agent)
    return ws


async def tamper(pool: asyncpg.Pool, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Run statements with the append-only triggers bypassed, as an attacker with DB access."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql, args in statements:
            await conn.execute(sql, *args)


async def rewrite_event(pool: asyncpg.Pool, ws: uuid.UUID, seq: int, **changes: object) -> str:
    """Change an event's payload and store it re-hashed (triggers bypassed); its new hash."""
    row = await pool.fetchrow(
        "SELECT * FROM action_events WHERE workspace_id = $1 AND seq = $2", ws, seq
    )
    assert row is not None
    payload = {**json.loads(row["payload"]), **changes}
    doc = documents.event_document(
        ws, seq, row["action_id"], row["event_type"], payload, row["created_at"]
    )
    rehashed = documents.event_hash(row["prev_hash"], doc)
    await tamper(
        pool,
        (
            "UPDATE action_events SET payload = $3::jsonb, hash = $4 "
            "WHERE workspace_id = $1 AND seq = $2",
            (ws, seq, json.dumps(payload), rehashed),
        ),
    )
    return rehashed


async def cli(dsn: str, *args: str) -> tuple[int, str]:
    """``python -m services.actions audit verify ARGS``; (exit code, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.actions",
        "audit",
        "verify",
        *args,
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": dsn},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def audit_verify(dsn: str, workspace: uuid.UUID) -> tuple[int, str]:
    """The real CLI on one workspace."""
    return await cli(dsn, "--workspace", str(workspace))


async def test_intact_chain_verifies_and_reports_its_rate(isolated_db: IsolatedDb) -> None:
    ws = await history(isolated_db)
    code, out = await audit_verify(isolated_db.dsn, ws)
    assert code == 0, out
    assert f"checked {EVENTS} events in 1 workspace(s)" in out
    assert "events/s" in out
    assert "all chains intact" in out


async def test_edited_payload_is_caught(isolated_db: IsolatedDb) -> None:
    ws = await history(isolated_db)
    await tamper(
        isolated_db.pool,
        (
            "UPDATE action_events SET payload = jsonb_set(payload, '{reason}', '\"edited\"') "
            "WHERE workspace_id = $1 AND seq = 5",
            (ws,),
        ),
    )
    code, out = await audit_verify(isolated_db.dsn, ws)
    assert code == 1
    assert f"BROKEN workspace={ws} seq=5 edited" in out


async def test_deleted_event_is_caught_as_a_gap(isolated_db: IsolatedDb) -> None:
    ws = await history(isolated_db)
    await tamper(
        isolated_db.pool, ("DELETE FROM action_events WHERE workspace_id = $1 AND seq = 4", (ws,))
    )
    code, out = await audit_verify(isolated_db.dsn, ws)
    assert code == 1
    assert f"BROKEN workspace={ws} seq=4 deleted: seq 4 missing" in out


async def test_deleted_newest_event_is_caught_by_the_chain_head(isolated_db: IsolatedDb) -> None:
    ws = await history(isolated_db)
    await tamper(
        isolated_db.pool,
        ("DELETE FROM action_events WHERE workspace_id = $1 AND seq = $2", (ws, EVENTS)),
    )
    code, out = await audit_verify(isolated_db.dsn, ws)
    assert code == 1
    assert f"BROKEN workspace={ws} seq={EVENTS} head_mismatch" in out


async def test_reordered_events_are_caught(isolated_db: IsolatedDb) -> None:
    ws = await history(isolated_db)
    swap = "UPDATE action_events SET seq = $2 WHERE workspace_id = $1 AND seq = $3"
    await tamper(isolated_db.pool, (swap, (ws, 1000, 6)), (swap, (ws, 6, 7)), (swap, (ws, 7, 1000)))
    code, out = await audit_verify(isolated_db.dsn, ws)
    assert code == 1
    assert f"BROKEN workspace={ws} seq=6 reordered: it follows seq 7" in out


async def test_rewritten_and_rehashed_event_is_caught_at_its_successor(
    isolated_db: IsolatedDb,
) -> None:
    ws = await history(isolated_db)
    await rewrite_event(isolated_db.pool, ws, 2, reason="rewritten")
    report = await verify(isolated_db.dsn, ws, emit=lambda _line: None)
    assert [(b.seq, b.kind) for b in report.breaks] == [(3, "relinked")]


async def test_verify_of_every_workspace_counts_all_chains(isolated_db: IsolatedDb) -> None:
    ws = await history(isolated_db)
    report = await verify(isolated_db.dsn, emit=lambda _line: None)
    assert report.workspaces > 1
    assert report.events >= EVENTS
    assert ws not in {b.workspace_id for b in report.breaks}


def test_unknown_workspace_is_an_input_error(database_dsn: str) -> None:
    from services.actions.audit.cli import run_verify

    assert run_verify(database_dsn, "nope") == 2
    assert run_verify(database_dsn, str(uuid.uuid4())) == 2


def test_unreachable_database_is_reported_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.actions.audit.cli import run_verify
    from services.dev.processes import free_port

    assert run_verify(f"postgresql://postgres@127.0.0.1:{free_port()}/x", None) == 2
    assert "cannot reach the database" in capsys.readouterr().err


@pytest.mark.slow
async def test_verify_streams_a_large_history(isolated_db: IsolatedDb) -> None:
    """200,001 events of 66,667 whole actions (rows and targets cross-checked): verified in
    batches; prints the events/s figure (a rate for the note, not an assertion)."""
    from tests.events.bighistory import append_synthetic_actions

    ws = await history(isolated_db)
    added = await append_synthetic_actions(isolated_db.pool, ws, 66_664)
    report = await verify(isolated_db.dsn, ws, emit=print)
    print(f"audit verify: {report.events} events, {report.events_per_second:,.0f} events/s")
    assert report.breaks == []
    assert report.events == EVENTS + added == 200_001
