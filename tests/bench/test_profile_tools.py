"""The profile's readers (``make profile``): py-spy summaries and pg_stat_statements per call.

The summary and the per-call arithmetic are checked on known inputs; the PostgreSQL with
pg_stat_statements is started for real (its own embedded cluster) and must count a
statement run inside a function as nested.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import psutil
import pytest

from bench import pgstats, pyspy

MAIN = "_run_module_as_main (<frozen runpy>);main (services/actions/__main__.py)"
RAW = "\n".join(
    [
        f"{MAIN};run (services/actions/lifecycle/one_transaction.py);"
        "Connection.execute (asyncpg/connection.py);"
        "_SelectorSocketTransport.write (asyncio/selector_events.py) 6",
        f"{MAIN};Handle._run (asyncio/events.py) 3",
        "Thread._bootstrap (threading.py);Thread.run (threading.py) 1",
        f"{MAIN};EpollSelector.select (selectors.py) 2",
    ]
)


def test_summary_shares_add_up_by_self_frame_area_and_our_callers(tmp_path: Path) -> None:
    profile = tmp_path / "p.txt"
    profile.write_text(RAW)
    summary = pyspy.summarize(profile)
    assert summary.samples == 12
    assert summary.self_rows[0] == (
        "_SelectorSocketTransport.write (asyncio/selector_events.py)",
        0.5,
    )
    areas = dict(summary.area_rows)
    assert areas == {
        "socket writes (asyncio transport)": 6 / 12,
        "C code under event-loop callbacks (grpc, asyncio)": 3 / 12,
        "waiting (select, thread waits)": 2 / 12,
        "C code in threads (grpc's poller)": 1 / 12,
    }
    ours = dict(summary.ours_rows)
    assert ours["main (services/actions/__main__.py)"] == 11 / 12
    assert ours["run (services/actions/lifecycle/one_transaction.py)"] == 6 / 12
    text = pyspy.render("x", summary)
    assert "50.0 %  _SelectorSocketTransport.write (asyncio/selector_events.py)" in text


def test_per_call_is_the_window_difference_divided_by_completed_calls() -> None:
    old = pgstats.Statement("SELECT 1", True, 10, 5.0, 1.0, 10)
    new = pgstats.Statement("SELECT 1", True, 30, 9.0, 1.0, 30)
    fresh = pgstats.Statement("SELECT 2", False, 4, 2.0, 0.0, 4)
    idle = pgstats.Statement("SELECT 3", True, 7, 1.0, 0.0, 7)
    found = pgstats.per_call(
        {(1, True): old, (3, True): idle}, {(1, True): new, (2, False): fresh, (3, True): idle}, 2
    )
    assert found == [
        pgstats.Statement("SELECT 1", True, 10.0, 2.0, 0.0, 10.0),
        pgstats.Statement("SELECT 2", False, 2.0, 1.0, 0.0, 2.0),
    ]


@pytest.mark.timeout(180)
async def test_own_postgres_counts_statements_inside_functions_as_nested(tmp_path: Path) -> None:
    with pgstats.stats_postgres(tmp_path / "pg") as dsn:
        await pgstats.enable(dsn)
        before = await pgstats.snapshot(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE t (x int)")
            await conn.execute(
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO t VALUES (1); END $$"
            )
            await conn.execute("SELECT f()")
        finally:
            await conn.close()
        found = pgstats.per_call(before, await pgstats.snapshot(dsn), 1)
    nested = [s for s in found if not s.toplevel]
    assert [s.query for s in nested] == ["INSERT INTO t VALUES ($1)"]
    assert any(s.toplevel and s.query == "SELECT f()" for s in found)
    assert not (tmp_path / "pg").exists()  # the cluster is deleted
    assert not _serving(tmp_path / "pg")  # and its server stopped


def _serving(pgdata: Path) -> list[int]:
    """Live (not zombie) processes whose command line names ``pgdata``."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if str(pgdata) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process.pid)
    return found
