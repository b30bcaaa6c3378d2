"""``python -m bench.profile`` (``make profile``): where Execute's, Check's and ListActions'
CPU goes.

The profile behind the targets ``make bench`` misses (bench/README.md). It runs the same
load as ``make bench``'s throughput lines, 64 calls in flight from two spawned
processes, against the same services (an action service and a 50-line policy service,
separate processes on port 0) and seed (16 workspaces of 64 agents), and records over
the measuring window only:

- **py-spy** of the action service and the policy service under Execute load and under
  sequential ListActions pages (100,000 audit rows), and of the policy service under
  Check load (raw collapsed stacks in the output directory, and summaries: functions on
  the CPU, our functions the CPU was spent under, areas);
- **pg_stat_statements** per completed Execute and per page: every statement the action
  service sent and every statement our database functions ran inside them. It needs the
  module preloaded, so this runs its own embedded PostgreSQL (``bench/pgstats.py``),
  never ``DATABASE_URL``'s server;
- CPU per call of each process group (``procs.CpuMeter``), as ``make bench`` counts it.

py-spy samples at 250 Hz from the same two cores, so throughput here is lower than
``make bench``'s; read the shares, not the rates. Output: ``bench/profiles/`` (or
``--out``), ``summary.txt`` plus one ``*.txt`` stack file per profile (speedscope and
flamegraph.pl read them).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import secrets
import sys
import tempfile
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bench import pgstats, policygen, procs, pyspy, scenarios, seed
from bench.load import LoadResult, percentile, run_load
from services.common.tokens import mint_service_token, mint_user_token

OUT = Path(__file__).resolve().parent / "profiles"
USER = "bench-user"
WORKSPACES, AGENTS, IN_FLIGHT, LOADERS = 16, 64, 64, 2
LIST_ROWS, LIST_TARGETS, LIST_CALLS = 100_000, 1000, 400  # make bench's pages, fewer rows
LIST_WORKSPACE = seed.workspace_ids(1, tag=2)[0]
T = TypeVar("T")


@dataclass
class Window:
    """A ``run_load`` sample function (:meth:`sample`) that also starts py-spy and snapshots
    pg_stat_statements at the window's start, and snapshots again and stops py-spy at its
    end (CPU is sampled outside both, and the end's before py-spy's slow stop)."""

    meter: procs.CpuMeter
    spies: pyspy.Spies
    dsn: str
    snapshots: list[pgstats.Snapshot] = field(default_factory=list)

    def sample(self) -> Mapping[str, float]:
        """CPU seconds now; start or stop the profilers."""
        if not self.snapshots:
            taken = self.meter.sample()
            self.snapshots.append(_blocking(pgstats.snapshot(self.dsn)))
            self.spies.start()
            return taken
        taken = self.meter.sample()
        self.snapshots.append(_blocking(pgstats.snapshot(self.dsn)))
        self.spies.stop()
        return taken

    def statements(self, completed: int) -> list[pgstats.Statement]:
        """The window's statements per completed call."""
        return pgstats.per_call(self.snapshots[0], self.snapshots[-1], completed)


def _blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion from synchronous code (``run_load`` blocks the event loop
    while it calls the sample function): on its own loop, in another thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _cpu_lines(title: str, load: LoadResult) -> str:
    totals = procs.CpuMeter.totals(load.sampled)
    parts = [f"{name} {load.per_call_ms(s):.2f}" for name, s in sorted(totals.items())]
    return (
        f"{title}: {load.completed} calls in {load.duration_s:.0f} s ({load.per_s:.0f}/s, "
        f"{load.errors} errors); CPU ms per call: " + ", ".join(parts)
    )


async def profile(out: Path, seconds: float) -> str:
    """Run the loads under the profilers; return the summary text (also ``summary.txt``)."""
    with tempfile.TemporaryDirectory(prefix="fleetward-profile-") as temporary:
        work = Path(temporary)
        with pgstats.stats_postgres(work / "pg") as server_dsn:
            async with procs.scratch_database(server_dsn) as dsn:
                await pgstats.enable(dsn)
                conn = await asyncpg.connect(dsn)
                try:
                    await seed.seed_agents(conn, seed.workspace_ids(WORKSPACES, tag=3), AGENTS, 4)
                    await seed.seed_agents(conn, [LIST_WORKSPACE], LIST_TARGETS, 10)
                    await seed.seed_audit_rows(conn, LIST_WORKSPACE, LIST_ROWS, LIST_TARGETS)
                finally:
                    await conn.close()
                report = await _profile_services(out, seconds, work, dsn)
    text = "\n\n".join(report) + "\n"
    (out / "summary.txt").write_text(text)
    return text


async def _profile_services(out: Path, seconds: float, work: Path, dsn: str) -> list[str]:
    jwt_secret, service_secret = secrets.token_hex(32), secrets.token_hex(32)
    small = policygen.small(USER)
    server = await procs.PostgresServer.of(dsn)
    policy_dir = policygen.write_policy_dir(work / "policy50", small)
    policy_env = procs.policy_env(service_secret, policy_dir, work / "decisions.jsonl")
    report: list[str] = []
    with procs.service("policy", "services.policy", policy_env, work) as policy:
        actions_env = procs.actions_env(service_secret, jwt_secret, dsn, policy.target)
        with procs.service("actions", "services.actions", actions_env, work) as actions:
            run = Profiled(
                out,
                actions.target,
                mint_user_token(jwt_secret, USER),
                dsn,
                server,
                {"actions": actions.pid, "policy": policy.pid},
            )
            report += _profile_execute(run, seconds)
            report += await _profile_list(run)
        checks = Profiled(
            out,
            policy.target,
            mint_service_token(service_secret, "bench"),
            dsn,
            server,
            {"policy": policy.pid},
        )
        report += _profile_check(checks, seconds, scenarios.check_items(small, 5000, seed=1))
    return report


@dataclass(frozen=True)
class Profiled:
    """What a profile needs: where it goes, the service called and the caller's token, the
    database, its server, and the pids to profile by name."""

    out: Path
    target: str
    token: str
    dsn: str
    server: procs.PostgresServer
    pids: dict[str, int]

    def window(self, prefix: str) -> tuple[pyspy.Spies, Window]:
        """py-spy of every pid (files ``<prefix>_<name>``) and the window that drives it."""
        spies = pyspy.Spies({f"{prefix}_{n}": pid for n, pid in self.pids.items()}, self.out)
        return spies, Window(procs.CpuMeter(self.pids, self.server), spies, self.dsn)


def _profile_execute(run: Profiled, seconds: float) -> list[str]:
    """Execute(pause_agent) at 64 in flight over 16 workspaces, as ``make bench``'s line."""
    spread = [
        (str(w), f"agent-{a}") for w in seed.workspace_ids(WORKSPACES, tag=3) for a in range(AGENTS)
    ]
    _load("execute", run.target, run.token, spread, 2)  # warm-up: plans, pools
    spies, window = run.window("execute")
    with spies:
        load = _load("execute", run.target, run.token, spread, seconds, window)
    return [
        _cpu_lines("Execute(pause_agent) under load", load),
        pgstats.render("Execute", window.statements(load.completed)),
        *(pyspy.render(n, pyspy.summarize(p)) for n, p in spies.files().items()),
    ]


def _profile_check(run: Profiled, seconds: float, items: Sequence[tuple[str, ...]]) -> list[str]:
    """Check at 64 in flight on the 50-line policy, as ``make bench``'s throughput line."""
    spies, window = run.window("check")
    with spies:
        load = _load("check", run.target, run.token, items, seconds, window)
    return [
        _cpu_lines("Check under load", load),
        *(pyspy.render(n, pyspy.summarize(p)) for n, p in spies.files().items()),
    ]


async def _profile_list(run: Profiled) -> list[str]:
    """Sequential 50-row ListActions pages by target id (as ``make bench``'s ListActions
    line, over fewer rows) under py-spy and pg_stat_statements."""
    await scenarios.list_actions_latencies_ms(
        run.target, run.token, LIST_WORKSPACE, LIST_TARGETS, 20, "target"
    )
    spies, window = run.window("list")
    with spies:
        before, begun = window.sample(), time.perf_counter()
        times = await scenarios.list_actions_latencies_ms(
            run.target, run.token, LIST_WORKSPACE, LIST_TARGETS, LIST_CALLS, "target"
        )
        seconds = time.perf_counter() - begun
        spent = {k: v - before.get(k, 0.0) for k, v in window.sample().items()}
    # The scenario's own unrecorded warm-up pages ran in the window too.
    pages = len(times) + scenarios.LIST_WARMUP
    load = LoadResult(pages, 0, times, seconds, sampled=spent)
    p50 = percentile(times, 50)
    title = f"ListActions by target, sequential ({LIST_ROWS:,} rows; p50 {p50:.2f} ms)"
    return [
        _cpu_lines(title, load),
        pgstats.render("ListActions", window.statements(pages)),
        *(pyspy.render(n, pyspy.summarize(p)) for n, p in spies.files().items()),
    ]


def _load(
    kind: str,
    target: str,
    token: str,
    items: Sequence[tuple[str, ...]],
    seconds: float,
    window: Window | None = None,
) -> LoadResult:
    return run_load(
        kind,
        target,
        token,
        items,
        in_flight=IN_FLIGHT,
        processes=LOADERS,
        duration_s=seconds,
        sample=window.sample if window else None,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, profile, print the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="each measuring window")
    parser.add_argument("--out", type=Path, default=OUT, help="where the profiles go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(asyncio.run(profile(args.out, args.seconds)))
    print(f"profiles in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
