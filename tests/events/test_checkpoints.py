"""Signed checkpoints outside PostgreSQL, and ``audit verify --checkpoints`` (DECISIONS.md).

The writer is the action service's own :class:`Checkpointer` on the runtime role; the
files are real files; the attacks are made as the database superuser, who can do
anything inside PostgreSQL, and each is named by its kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from services.actions.audit import documents
from services.actions.audit.verify import verify
from services.actions.checkpoints import files, reader
from services.actions.checkpoints.signing import (
    CheckpointError,
    SigningKey,
    create_signing_key,
    load_private_key_file,
    parse,
)
from services.actions.checkpoints.writer import LOCK_CLASS, Checkpointer
from services.actions.db import create_pool
from tests.actions.helpers import Api
from tests.conftest import Secrets
from tests.events.conftest import IsolatedDb
from tests.events.test_audit_verify import REPO, cli, history, rewrite_event, tamper
from tests.servers import running_action_server_handle


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    """A checkpoint key generated for this test (0600)."""
    return create_signing_key(tmp_path / "key.pem")


@pytest.fixture
async def runtime_pool(isolated_db: IsolatedDb) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the services' runtime role, the writer's."""
    pool = await create_pool(isolated_db.runtime_dsn, max_size=4, acquire_timeout_s=5)
    yield pool
    await pool.close()


async def kinds(
    db: IsolatedDb, ws: uuid.UUID, directory: Path, max_unsigned_age_s: float = 600.0
) -> list[str]:
    """The kinds ``audit verify --checkpoints`` finds for one workspace."""
    report = await verify(
        db.dsn,
        ws,
        checkpoints=reader.load(directory),
        emit=lambda _: None,
        max_unsigned_age_s=max_unsigned_age_s,
    )
    return [b.kind for b in report.breaks]


async def checkpointed(
    db: IsolatedDb, pool: asyncpg.Pool, directory: Path, key: SigningKey
) -> uuid.UUID:
    """A workspace with nine events, signed at seq 9."""
    ws = await history(db)
    assert await Checkpointer(pool, directory, key).write_due() >= 1
    return ws


async def test_a_moved_head_is_signed_once_and_verifies(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    directory = tmp_path / "checkpoints"
    writer = Checkpointer(runtime_pool, directory, key)
    ws = await history(isolated_db)
    await writer.write_due()
    assert await writer.write_due() == 0  # nothing moved
    path = files.path_for(directory, ws)
    assert len(files.complete_lines(path.read_bytes())) == 1
    await isolated_db.api.execute("bob", ws, "resume_agent", target="eng-code-1")
    await writer.write_due()

    lines = files.complete_lines(path.read_bytes())
    signed = [parse(line, {key.key_id: key.public}) for line in lines]
    assert [c.seq for c in signed] == [9, 12]
    assert (directory / "keys" / f"{key.key_id}.pem").exists()
    # A new writer (a restart, another replica) continues from the file, not from memory.
    assert await Checkpointer(runtime_pool, directory, key).write_due() == 0

    code, out = await cli(
        isolated_db.dsn,
        "--workspace",
        str(ws),
        "--checkpoints",
        str(directory),
        "--public-key",
        str(directory / "keys" / f"{key.key_id}.pem"),
    )
    assert code == 0, out
    assert "all chains intact" in out
    assert "checkpoints: 2 signed head(s) verified with 1 key(s) from --public-key" in out
    assert "1 of 1 workspace(s) covered; 0 event(s) after their newest checkpoint" in out


async def test_attack_1_a_forged_suffix_after_a_truncation_is_caught(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    # The superuser deletes events 5..9 and appends forged ones in their place (the
    # same actions, a different reason), hashed correctly, and moves the head to them.
    rows = await isolated_db.pool.fetch(
        "SELECT * FROM action_events WHERE workspace_id = $1 AND seq >= 5 ORDER BY seq", ws
    )
    prev = rows[0]["prev_hash"]
    forged = []
    for row in rows:
        payload = {**json.loads(row["payload"]), "reason": "routine maintenance"}
        doc = documents.event_document(
            ws, row["seq"], row["action_id"], row["event_type"], payload, row["created_at"]
        )
        digest = documents.event_hash(prev, doc)
        forged.append((row["seq"], json.dumps(payload), prev, digest))
        prev = digest
    await tamper(
        isolated_db.pool,
        ("DELETE FROM action_events WHERE workspace_id = $1 AND seq >= 5", (ws,)),
        *(
            (
                "INSERT INTO action_events (workspace_id, seq, action_id, event_type, payload, "
                "created_at, prev_hash, hash) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)",
                (ws, seq, row["action_id"], row["event_type"], payload, row["created_at"], p, h),
            )
            for (seq, payload, p, h), row in zip(forged, rows, strict=True)
        ),
        (
            "UPDATE audit_chain_heads SET last_seq = 9, last_hash = $2 WHERE workspace_id = $1",
            (ws, prev),
        ),
    )
    # Without the checkpoints the chain itself verifies: only the rows contradict it.
    plain = await verify(isolated_db.dsn, ws, emit=lambda _: None)
    assert {b.kind for b in plain.breaks} <= {"row_rewritten"}
    # The chain disagrees with the checkpoint; the rows, still true, with the forged events.
    found = await kinds(isolated_db, ws, tmp_path)
    assert found[0] == "forged_suffix"
    assert set(found) == {"forged_suffix", "row_rewritten"}


async def test_attack_2_deleted_newest_events_and_a_rewound_head_are_caught(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    kept = await isolated_db.pool.fetchval(
        "SELECT hash FROM action_events WHERE workspace_id = $1 AND seq = 6", ws
    )
    await tamper(
        isolated_db.pool,
        ("DELETE FROM action_events WHERE workspace_id = $1 AND seq > 6", (ws,)),
        (
            "UPDATE audit_chain_heads SET last_seq = 6, last_hash = $2 WHERE workspace_id = $1",
            (ws, kept),
        ),
    )
    # The rows of the third action now disagree with the chain too (its events are gone).
    found = await kinds(isolated_db, ws, tmp_path)
    assert found[0] == "truncated_after_checkpoint"
    assert set(found) == {"truncated_after_checkpoint", "row_rewritten", "targets_rewritten"}
    code, out = await cli(isolated_db.dsn, "--workspace", str(ws), "--checkpoints", str(tmp_path))
    assert code == 1
    assert (
        f"BROKEN workspace={ws} seq=7 truncated_after_checkpoint: the chain ends at seq 6, "
        "but a checkpoint signed at" in out
    )


async def test_attack_3_a_completed_row_rewritten_past_the_guard_is_caught(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    action_id = await isolated_db.pool.fetchval(
        "SELECT action_id FROM action_audit_log WHERE workspace_id = $1 LIMIT 1", ws
    )
    await tamper(
        isolated_db.pool,
        (
            "UPDATE action_audit_log SET status = 'rolled_back', rolled_back_at = now(), "
            "result = '{\"count\": 0}', error_message = 'nothing happened' WHERE action_id = $1",
            (action_id,),
        ),
    )
    report = await verify(
        isolated_db.dsn, ws, checkpoints=reader.load(tmp_path), emit=lambda _: None
    )
    assert [b.kind for b in report.breaks] == ["row_rewritten"]
    detail = report.breaks[0].detail
    assert str(action_id) in detail
    assert 'status: the chain says "completed", the row says "rolled_back"' in detail


async def test_attack_4_truncated_or_rewritten_targets_are_caught(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    first, second = [
        r["action_id"]
        for r in await isolated_db.pool.fetch(
            "SELECT action_id FROM action_audit_log WHERE workspace_id = $1 ORDER BY created_at",
            ws,
        )
    ][:2]
    await tamper(
        isolated_db.pool,
        ("DELETE FROM action_targets WHERE action_id = $1", (first,)),
        (
            'UPDATE action_targets SET before = \'{"status": "paused"}\' WHERE action_id = $1',
            (second,),
        ),
    )
    assert sorted(await kinds(isolated_db, ws, tmp_path)) == [
        "targets_missing",
        "targets_rewritten",
    ]
    # TRUNCATE, as the attacker did: every action of the database loses its rows.
    await tamper(isolated_db.pool, ("TRUNCATE action_targets", ()))
    assert set(await kinds(isolated_db, ws, tmp_path)) == {"targets_missing"}


async def test_a_tampered_or_foreign_checkpoint_line_is_a_bad_signature(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    path = files.path_for(tmp_path, ws)
    line = json.loads(files.complete_lines(path.read_bytes())[0])
    edited = json.dumps({**line, "seq": 5}).encode()
    other = create_signing_key(tmp_path / "other.pem")
    planted = Checkpointer(runtime_pool, tmp_path / "elsewhere", other)
    await planted.write_due()
    foreign = files.complete_lines(files.path_for(tmp_path / "elsewhere", ws).read_bytes())[0]
    with path.open("ab") as fh:
        fh.write(edited + b"\n" + foreign + b"\n")

    pinned = reader.load(tmp_path, [tmp_path / "keys" / f"{key.key_id}.pem"])
    details = [b.detail for b in pinned.bad if b.workspace_id == ws]
    assert len(details) == 2
    assert "the signature does not verify" in details[0]
    assert f"signed by unknown key {other.key_id}" in details[1]
    report = await verify(isolated_db.dsn, ws, checkpoints=pinned, emit=lambda _: None)
    assert [b.kind for b in report.breaks] == ["bad_signature", "bad_signature"]


async def test_key_rotation_keeps_old_checkpoints_verifiable(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    rotated = create_signing_key(tmp_path / "rotated.pem")
    await isolated_db.api.execute("bob", ws, "resume_agent", target="eng-code-1")
    assert await Checkpointer(runtime_pool, tmp_path, rotated).write_due() == 1

    both = reader.load(tmp_path)
    assert set(both.keys) == {key.key_id, rotated.key_id}
    assert [c.key_id for c in both.by_workspace[ws]] == [key.key_id, rotated.key_id]
    assert await kinds(isolated_db, ws, tmp_path) == []
    only_new = reader.load(tmp_path, [tmp_path / "keys" / f"{rotated.key_id}.pem"])
    mine = [b.detail for b in only_new.bad if b.workspace_id == ws]
    assert mine == [f"signed by unknown key {key.key_id}"]


async def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_writer(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    path = files.path_for(tmp_path, ws)
    whole = path.read_bytes()
    with path.open("ab") as fh:  # what a writer killed mid-write leaves
        fh.write(whole[: len(whole) // 2])

    loaded = reader.load(tmp_path)
    assert (loaded.torn, loaded.bad, len(loaded.by_workspace[ws])) == ([path], [], 1)
    assert await kinds(isolated_db, ws, tmp_path) == []
    await isolated_db.api.execute("bob", ws, "resume_agent", target="eng-code-1")
    assert await Checkpointer(runtime_pool, tmp_path, key).write_due() == 1
    lines = files.complete_lines(path.read_bytes())
    assert path.read_bytes().endswith(b"\n")
    assert [parse(line, {key.key_id: key.public}).seq for line in lines] == [9, 12]


_WRITER = """
import sys, uuid
from datetime import UTC, datetime
from pathlib import Path
from services.actions.checkpoints import files
from services.actions.checkpoints.signing import Checkpoint, load_signing_key, sign
key = load_signing_key(Path(sys.argv[1]))
path = Path(sys.argv[2])
ws = uuid.UUID(path.name.removesuffix(".jsonl"))
seq = 0
print("ready", flush=True)
while True:
    seq += 1
    files.append(path, sign(Checkpoint(ws, seq, "ab" * 32, datetime.now(UTC), key.key_id), key))
"""


async def test_a_writer_killed_at_any_moment_leaves_a_file_that_verifies(
    tmp_path: Path, key: SigningKey
) -> None:
    path = files.path_for(tmp_path, uuid.uuid4())
    for delay in (0.05, 0.11, 0.17, 0.23, 0.29, 0.31, 0.37, 0.41, 0.43, 0.47):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            str(tmp_path / "key.pem"),
            str(path),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"ready\n"
        await asyncio.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        data = path.read_bytes()
        lines = files.complete_lines(data)
        assert lines, "the writer wrote nothing"
        # Every complete line is a whole, signed checkpoint; at most the last is torn.
        for line in lines:
            parse(line, {key.key_id: key.public})


async def test_two_replicas_writing_at_once_leave_only_verifiable_ordered_lines(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await history(isolated_db)
    other_pool = await create_pool(isolated_db.runtime_dsn, max_size=4, acquire_timeout_s=5)
    replicas = [Checkpointer(runtime_pool, tmp_path, key), Checkpointer(other_pool, tmp_path, key)]
    try:

        async def act() -> None:
            for i in range(20):
                verb = "pause_agent" if i % 2 else "resume_agent"
                await isolated_db.api.execute("bob", ws, verb, target="eng-code-1")

        async def keep_writing(replica: Checkpointer) -> None:
            for _ in range(60):
                await replica.write_due()
                await asyncio.sleep(0)

        await asyncio.gather(act(), *(keep_writing(r) for r in replicas))
        await replicas[0].write_due()
    finally:
        await other_pool.close()
    signed = [
        parse(line, {key.key_id: key.public})
        for line in files.complete_lines(files.path_for(tmp_path, ws).read_bytes())
    ]
    seqs = [c.seq for c in signed]
    assert seqs == sorted(set(seqs)), "each head once, in order"
    head = await isolated_db.pool.fetchval(
        "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1", ws
    )
    assert seqs[-1] == head
    assert await kinds(isolated_db, ws, tmp_path) == []


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    create_signing_key(path)
    path.chmod(0o644)
    with pytest.raises(CheckpointError, match="readable by others"):
        load_private_key_file(path)
    path.chmod(0o600)
    assert load_private_key_file(path).key_id


async def test_the_action_service_signs_at_start_and_at_shutdown(
    isolated_db: IsolatedDb,
    events_policy_target: str,
    dev_secrets: Secrets,
    tmp_path: Path,
    key: SigningKey,
) -> None:
    ws = await isolated_db.new_workspace()
    directory = tmp_path / "checkpoints"
    path = files.path_for(directory, ws)
    async with running_action_server_handle(
        isolated_db.runtime_dsn,
        events_policy_target,
        dev_secrets,
        checkpoint_dir=directory,
        checkpoint_key_file=tmp_path / "key.pem",
        checkpoint_interval_s=3600,  # only the pass at start (before these actions) and
    ) as built:  # the pass at shutdown
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            api = Api(channel, dev_secrets)
            await api.execute("bob", ws, "pause_agent", target="eng-code-1")
            await api.execute("bob", ws, "resume_agent", target="eng-code-1")
        assert not path.exists()
    lines = files.complete_lines(path.read_bytes())
    assert [parse(x, {key.key_id: key.public}).seq for x in lines] == [6]
    assert await kinds(isolated_db, ws, directory) == []


async def test_the_writer_never_signs_a_head_that_does_not_extend_its_last_checkpoint(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    path = files.path_for(tmp_path, ws)
    before = path.read_bytes()
    # The superuser rewrites event 9 (re-hashed) and moves the head; then a real action.
    rehashed = await rewrite_event(isolated_db.pool, ws, 9, reason="routine maintenance")
    await tamper(
        isolated_db.pool,
        ("UPDATE audit_chain_heads SET last_hash = $2 WHERE workspace_id = $1", (ws, rehashed)),
    )
    await isolated_db.api.execute("bob", ws, "resume_agent", target="eng-code-1")

    await Checkpointer(runtime_pool, tmp_path, key).write_due()
    assert path.read_bytes() == before, "a rewritten history must not be signed"
    assert (await kinds(isolated_db, ws, tmp_path))[0] == "forged_suffix"


async def test_a_held_lock_or_a_foreign_file_stops_one_workspace_not_the_pass(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    blocked, foreign, fine = [await history(isolated_db) for _ in range(3)]
    files.path_for(tmp_path, foreign).write_bytes(b"x" * 5000)  # no line break: not ours
    holder = await asyncpg.connect(isolated_db.runtime_dsn)  # a stolen credential's session
    try:
        await holder.execute(
            "SELECT pg_advisory_lock($1, hashtext($2::uuid::text))", LOCK_CLASS, blocked
        )
        await Checkpointer(runtime_pool, tmp_path, key).write_due()
    finally:
        await holder.close()
    assert files.path_for(tmp_path, fine).exists()
    assert not files.path_for(tmp_path, blocked).exists()
    # What the writer could not sign for long is a finding of its own.
    assert await kinds(isolated_db, blocked, tmp_path, max_unsigned_age_s=0) == ["unsigned_events"]


async def test_crafted_checkpoint_entries_are_findings_not_crashes(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    path = files.path_for(tmp_path, ws)
    with path.open("ab") as fh:
        fh.write(b'{"v": 1, "key_id": "\\ud800"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    (tmp_path / f"{uuid.uuid4()}.jsonl").mkdir()
    (tmp_path / f"{uuid.uuid4()}.jsonl").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / f"{uuid.uuid4()}.jsonl")
    os.mkfifo(tmp_path / "keys" / "fifo.pem")

    loaded = await asyncio.wait_for(asyncio.to_thread(reader.load, tmp_path), 10)
    assert len(loaded.by_workspace[ws]) == 1
    assert len(loaded.bad) == 5
    code, out = await cli(isolated_db.dsn, "--checkpoints", str(tmp_path))
    assert code == 1, out
    assert "Traceback" not in out
    assert out.count("bad_signature") == 5


async def test_verify_goes_on_past_a_broken_event_and_never_crashes_on_stored_data(
    isolated_db: IsolatedDb,
) -> None:
    ws = await history(isolated_db)
    action_id = await isolated_db.pool.fetchval(
        "SELECT action_id FROM action_audit_log WHERE workspace_id = $1 LIMIT 1", ws
    )
    await tamper(
        isolated_db.pool,
        # An event whose payload holds a 5,000-digit number (past Python's default limit),
        # stored without its hash: it must not hide what follows or crash the verifier.
        (
            "UPDATE action_events SET payload = jsonb_set(payload, '{n}', "
            "('1' || repeat('0', 5000))::jsonb) WHERE workspace_id = $1 AND seq = 2",
            (ws,),
        ),
        (
            "UPDATE action_audit_log SET reason = 'rewritten afterwards' WHERE action_id = $1",
            (action_id,),
        ),
    )
    code, out = await cli(isolated_db.dsn, "--workspace", str(ws))
    assert code == 1, out
    assert "Traceback" not in out
    assert f"BROKEN workspace={ws} seq=2 edited" in out
    assert f"BROKEN workspace={ws} row_rewritten: action {action_id}" in out


async def test_a_gap_does_not_hide_an_edit_and_odd_rows_do_not_hide_the_rest(
    isolated_db: IsolatedDb,
) -> None:
    ws = await history(isolated_db)
    first = await isolated_db.pool.fetchval(
        "SELECT action_id FROM action_events WHERE workspace_id = $1 AND seq = 1", ws
    )
    deep = "[" * 5000 + "]" * 5000
    await tamper(
        isolated_db.pool,
        ("DELETE FROM action_events WHERE workspace_id = $1 AND seq = 3", (ws,)),
        (
            "UPDATE action_events SET payload = jsonb_set(payload, '{reason}', '\"innocent\"') "
            "WHERE workspace_id = $1 AND seq = 4",
            (ws,),
        ),
        # A row the verifier cannot parse (5,000 levels deep) is one finding, not the end.
        (
            f"UPDATE action_audit_log SET action_params = '{deep}'::jsonb WHERE action_id = $1",
            (first,),
        ),
    )
    report = await verify(isolated_db.dsn, ws, emit=lambda _: None)
    found = {(b.kind, b.seq) for b in report.breaks}
    assert ("deleted", 3) in found
    assert ("edited", 4) in found
    assert ("undecodable", None) in found
    # A JSON string where an object is usual is a value like any other, not unreadable.
    ws2 = await history(isolated_db)
    await tamper(
        isolated_db.pool,
        (
            "UPDATE action_audit_log SET action_params = '\"just a string\"' "
            "WHERE workspace_id = $1",
            (ws2,),
        ),
    )
    kinds_found = {b.kind for b in (await verify(isolated_db.dsn, ws2, emit=lambda _: None)).breaks}
    assert kinds_found == {"row_rewritten"}


async def test_a_fully_signed_idle_workspace_is_not_unsigned(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    ws = await checkpointed(isolated_db, runtime_pool, tmp_path, key)
    assert await kinds(isolated_db, ws, tmp_path, max_unsigned_age_s=0) == []


async def test_the_writer_follows_no_symlink_and_waits_on_no_fifo(
    isolated_db: IsolatedDb, runtime_pool: asyncpg.Pool, tmp_path: Path, key: SigningKey
) -> None:
    linked, piped, fine = [await history(isolated_db) for _ in range(3)]
    victim = tmp_path / "victim.conf"
    victim.write_bytes(b"important=1\nkeep_me=please")
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    files.path_for(directory, linked).symlink_to(victim)
    os.mkfifo(files.path_for(directory, piped))

    await asyncio.wait_for(Checkpointer(runtime_pool, directory, key).write_due(), 30)
    assert victim.read_bytes() == b"important=1\nkeep_me=please"
    assert files.path_for(directory, fine).exists()
