"""``import-agents``: the platform inventory as an idempotent upsert (docs/architecture.md §6)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.actions.inventory import ImportResult, import_agents
from services.actions.inventory_file import InventoryError, read_inventory
from tests.conftest import NewWorkspace, Workspace
from tests.foundation.conftest import PYTHON, REPO, clean_env

_AGENTS = """
SELECT agent_id, department_id, status, paused_until, generation, last_action_id, updated_at
FROM agents WHERE workspace_id = $1 ORDER BY agent_id"""
_DEPARTMENTS = """
SELECT department_id, name FROM departments WHERE workspace_id = $1 ORDER BY department_id"""


def _csv(tmp_path: Path, text: str, name: str = "inventory.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _full_listing(ws: Workspace, **moves: str) -> str:
    """The workspace's current inventory as a ``workspace_id`` CSV, with agents moved."""
    lines = ["workspace_id,department_id,agent_id"]
    lines += [f"{ws.id},{moves.get(a, d)},{a}" for a, d in sorted(ws.agents.items())]
    return "\n".join(lines) + "\n"


async def _agents(pool: asyncpg.Pool, ws: uuid.UUID) -> dict[str, asyncpg.Record]:
    return {r["agent_id"]: r for r in await pool.fetch(_AGENTS, ws)}


async def test_import_creates_new_agents_and_departments(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace(agents_per_department=1)
    path = _csv(
        tmp_path,
        "workspace_id,department_id,agent_id,department_name\n"
        f"{ws.id},engineering,eng-code-1,\n"
        f"{ws.id},research,res-lab-1,Research & Development\n"
        f"{ws.id},research,res-lab-2,\n",
    )

    result = await import_agents(database_dsn, path)

    assert result == ImportResult(
        listed=3,
        inserted=2,
        moved=0,
        reactivated=0,
        retired=0,
        departments_created=1,
        departments_renamed=0,
    )
    assert result.unchanged == 1
    agents = await _agents(pool, ws.id)
    assert {a: r["department_id"] for a, r in agents.items()} == {
        "eng-code-1": "engineering",
        "sup-chat-1": "support",
        "res-lab-1": "research",
        "res-lab-2": "research",
    }
    assert agents["res-lab-1"]["status"] == "active"
    departments = {r["department_id"]: r["name"] for r in await pool.fetch(_DEPARTMENTS, ws.id)}
    assert departments["research"] == "Research & Development"
    assert departments["engineering"] == "Engineering"  # no name given: kept


async def test_importing_the_same_file_twice_changes_nothing(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    path = _csv(tmp_path, _full_listing(ws) + f"{ws.id},support,sup-new-1\n")
    await import_agents(database_dsn, path)
    before = await _agents(pool, ws.id)

    result = await import_agents(database_dsn, path, prune=True)

    assert (result.inserted, result.moved, result.retired, result.unchanged) == (0, 0, 0, 7)
    assert await _agents(pool, ws.id) == before


async def test_import_moves_an_agent_and_keeps_its_control_state(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    last_action = uuid.uuid4()
    await pool.execute(
        "UPDATE agents SET status = 'paused', paused_until = now() + interval '1 hour', "
        "generation = 4, last_action_id = $2 WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ws.id,
        last_action,
    )
    before = await _agents(pool, ws.id)

    result = await import_agents(
        database_dsn, _csv(tmp_path, _full_listing(ws, **{"eng-code-1": "support"}))
    )

    assert (result.moved, result.inserted, result.unchanged) == (1, 0, len(ws.agents) - 1)
    after = await _agents(pool, ws.id)
    moved = after["eng-code-1"]
    assert moved["department_id"] == "support"
    for column in ("status", "paused_until", "generation", "last_action_id"):
        assert moved[column] == before["eng-code-1"][column], column
    assert {a: r for a, r in after.items() if a != "eng-code-1"} == {
        a: r for a, r in before.items() if a != "eng-code-1"
    }


async def test_prune_retires_unlisted_agents_and_deletes_nothing(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    other = await new_workspace()
    await pool.execute(
        "UPDATE agents SET status = 'paused', paused_until = now() + interval '1 hour' "
        "WHERE workspace_id = $1 AND agent_id = 'sup-chat-3'",
        ws.id,
    )
    other_before = await _agents(pool, other.id)
    kept = ["eng-code-1", "sup-chat-1"]
    path = _csv(
        tmp_path,
        "department_id,agent_id\n" + "".join(f"{ws.agents[a]},{a}\n" for a in kept),
    )

    result = await import_agents(database_dsn, path, workspace_id=ws.id, prune=True)

    assert result.retired == len(ws.agents) - len(kept)
    agents = await _agents(pool, ws.id)
    assert sorted(agents) == sorted(ws.agents)  # nothing deleted
    assert {a for a, r in agents.items() if r["status"] == "retired"} == set(ws.agents) - set(kept)
    assert agents["sup-chat-3"]["paused_until"] is None
    assert {agents[a]["status"] for a in kept} == {"active"}
    assert await _agents(pool, other.id) == other_before


async def test_without_prune_unlisted_agents_stay(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    before = await _agents(pool, ws.id)

    result = await import_agents(
        database_dsn,
        _csv(tmp_path, "department_id,agent_id\nengineering,eng-code-1\n"),
        workspace_id=ws.id,
    )

    assert result.retired == 0
    assert await _agents(pool, ws.id) == before


async def test_a_retired_agent_listed_again_becomes_active(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    only_one = _csv(tmp_path, "department_id,agent_id\nengineering,eng-code-1\n", "one.csv")
    await import_agents(database_dsn, only_one, workspace_id=ws.id, prune=True)

    result = await import_agents(database_dsn, _csv(tmp_path, _full_listing(ws)), prune=True)

    assert result.reactivated == len(ws.agents) - 1
    assert {r["status"] for r in (await _agents(pool, ws.id)).values()} == {"active"}


async def test_a_retired_agent_listed_in_another_department_counts_once(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace(agents_per_department=1)
    only_one = _csv(tmp_path, "department_id,agent_id\nengineering,eng-code-1\n", "one.csv")
    await import_agents(database_dsn, only_one, workspace_id=ws.id, prune=True)

    result = await import_agents(
        database_dsn, _csv(tmp_path, _full_listing(ws, **{"sup-chat-1": "engineering"}))
    )

    assert (result.reactivated, result.moved, result.unchanged) == (1, 0, 1)
    agent = (await _agents(pool, ws.id))["sup-chat-1"]
    assert (agent["status"], agent["department_id"]) == ("active", "engineering")


async def test_a_given_department_name_renames_the_department(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace(agents_per_department=1)

    result = await import_agents(
        database_dsn,
        _csv(
            tmp_path, "department_id,agent_id,department_name\nsupport,sup-chat-1,Customer Care\n"
        ),
        workspace_id=ws.id,
    )

    assert result.departments_renamed == 1
    departments = {r["department_id"]: r["name"] for r in await pool.fetch(_DEPARTMENTS, ws.id)}
    assert departments == {"engineering": "Engineering", "support": "Customer Care"}


async def _unchanged_after_refusal(
    pool: asyncpg.Pool, ws: Workspace, path: Path, dsn: str, **kwargs: object
) -> InventoryError:
    agents_before = await _agents(pool, ws.id)
    departments_before = await pool.fetch(_DEPARTMENTS, ws.id)
    with pytest.raises(InventoryError) as refused:
        await import_agents(dsn, path, **kwargs)  # type: ignore[arg-type]
    assert await _agents(pool, ws.id) == agents_before
    assert await pool.fetch(_DEPARTMENTS, ws.id) == departments_before
    return refused.value


async def test_invalid_ids_are_reported_by_line_and_nothing_changes(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    path = _csv(
        tmp_path,
        "workspace_id,department_id,agent_id\n"
        f"{ws.id},engineering,eng-new-1\n"
        f"{ws.id},engineering,../etc\n"
        f"{ws.id},Support,sup-chat-1\n"
        f"{ws.id},support,a/b\n"
        f"{ws.id},support,*\n"
        f"{ws.id},support,{'x' * 65}\n"
        f"{ws.id},new-dept,eng-code-1\n",
    )

    error = await _unchanged_after_refusal(pool, ws, path, database_dsn, prune=True)

    assert [m.split(": ", 1)[0] for m in error.messages] == [
        f"{path}:3",
        f"{path}:4",
        f"{path}:5",
        f"{path}:6",
        f"{path}:7",
    ]
    assert "agent_id '../etc' must match" in error.messages[0]
    assert "department_id 'Support' must match" in error.messages[1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not-a-uuid,engineering,eng-code-1\n", ":2: workspace_id 'not-a-uuid' is not a UUID"),
        ("{ws},engineering\n", ":2: expected 3 fields, found 2"),
        ("{ws},engineering,eng-code-1,extra\n", ":2: expected 3 fields, found 4"),
        (
            "{ws},engineering,eng-code-1\n{ws},support,eng-code-1\n",
            ":3: agent 'eng-code-1' is already listed on line 2",
        ),
        (
            "{ws},engineering,eng-code-1\n{ws},engineering,eng-code-9\n{other},support,x-1\n",
            ":4: workspace {other} does not exist",
        ),
    ],
    ids=["bad-uuid", "short-row", "long-row", "duplicate-agent", "unknown-workspace"],
)
async def test_a_bad_row_refuses_the_whole_file(
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
    tmp_path: Path,
    database_dsn: str,
    body: str,
    message: str,
) -> None:
    ws = await new_workspace()
    other = uuid.uuid4()
    path = _csv(
        tmp_path,
        "workspace_id,department_id,agent_id\n" + body.format(ws=ws.id, other=other),
    )

    error = await _unchanged_after_refusal(pool, ws, path, database_dsn, prune=True)

    assert f"{path}{message.format(other=other)}" in error.messages


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("department_id,agent_id", ":1: missing column 'workspace_id'"),
        ("workspace_id,department,agent_id", ":1: missing column 'department_id'"),
        ("workspace_id,department_id,agent_id,owner", ":1: unknown column 'owner'"),
        ("", ":1: empty file"),
    ],
)
def test_a_bad_header_is_refused(tmp_path: Path, header: str, message: str) -> None:
    path = _csv(tmp_path, header + "\n" if header else "")

    with pytest.raises(InventoryError) as refused:
        read_inventory(path)

    assert any(m.startswith(f"{path}{message}") for m in refused.value.messages)


def test_a_workspace_column_must_agree_with_the_workspace_option(tmp_path: Path) -> None:
    ws, other = uuid.uuid4(), uuid.uuid4()
    path = _csv(tmp_path, f"workspace_id,department_id,agent_id\n{other},engineering,eng-1\n")

    with pytest.raises(InventoryError, match=f"differs from --workspace {ws}"):
        read_inventory(path, workspace_id=ws)


def test_one_department_with_two_names_is_refused(tmp_path: Path) -> None:
    ws = uuid.uuid4()
    path = _csv(
        tmp_path,
        "department_id,agent_id,department_name\nops,ops-1,Operations\nops,ops-2,Ops\n",
    )

    with pytest.raises(InventoryError, match=r":3: department 'ops' is named 'Operations'"):
        read_inventory(path, workspace_id=ws)


async def test_prune_with_an_empty_file_is_refused(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()

    error = await _unchanged_after_refusal(
        pool,
        ws,
        _csv(tmp_path, "department_id,agent_id\n"),
        database_dsn,
        workspace_id=ws.id,
        prune=True,
    )
    assert "refusing to retire every agent" in error.messages[0]


def _cli(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "services.actions", "import-agents", *args],
        cwd=REPO,
        env=clean_env({"DATABASE_URL": dsn}),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_import_agents_command_imports_and_prunes(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    path = _csv(tmp_path, "department_id,agent_id\nengineering,eng-code-1\nsupport,sup-new-1\n")

    proc = _cli(str(path), "--workspace", str(ws.id), "--prune", dsn=database_dsn)

    assert proc.returncode == 0, proc.stderr
    assert "2 agent(s) listed: 1 new" in proc.stdout
    assert f"{len(ws.agents) - 1} retired" in proc.stdout
    statuses = {a: r["status"] for a, r in (await _agents(pool, ws.id)).items()}
    assert statuses["sup-new-1"] == "active"
    assert statuses["sup-chat-1"] == "retired"


async def test_import_agents_command_reports_file_and_line_and_fails(
    pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path, database_dsn: str
) -> None:
    ws = await new_workspace()
    path = _csv(tmp_path, "department_id,agent_id\nengineering,eng-new-1\nengineering,BAD\n")

    proc = _cli(str(path), "--workspace", str(ws.id), dsn=database_dsn)

    assert proc.returncode == 1
    assert f"{path}:3: agent_id 'BAD' must match" in proc.stderr
    assert "nothing imported" in proc.stderr
    assert "eng-new-1" not in await _agents(pool, ws.id)


def test_import_agents_command_refuses_a_malformed_workspace_option(
    tmp_path: Path, database_dsn: str
) -> None:
    path = _csv(tmp_path, "department_id,agent_id\nengineering,eng-1\n")

    proc = _cli(str(path), "--workspace", "acme", dsn=database_dsn)

    assert proc.returncode == 2
    assert "--workspace: 'acme' is not a workspace UUID" in proc.stderr
