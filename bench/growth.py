"""``python -m bench.growth [--quick | --full]``: how cost grows with the work.

One table (bench/growth_table.py), each figure at sizes a decade apart, through the real
services as separate processes on port 0 (bench/procs.py), on scratch databases of the
server of ``DATABASE_URL`` (each phase makes its own and drops it):

- a fleet-scope pause at 1k / 10k / 100k agents, each including its CheckResources of
  every agent: seconds per pause, the median of 9 / 5 / 3 rounds (each pause resumed and
  ``agents`` vacuumed before the next, untimed), and the CPU time the pause took in both
  services and the action service's PostgreSQL backends (steadier on a shared machine);
- ListActions p99 (and p50, and its statement's EXPLAIN ANALYZE), 50-row pages by target
  (bench/scenarios.py), at 100k / 1M audit rows, and 10M with ``--full``: bench/seed.py's
  rows, grown in place, the indexes built after each load (bench/growth_seed.py);
- Check p50 at 100 / 10k / 100k policy lines (bench/policygen.py), the three policy
  services asked in interleaved rounds;
- ``audit verify`` events/s (services.actions.audit.verify, the function the CLI runs)
  at 10k / 100k / 1M events of a valid hash chain (bench/growth_history.py), and a
  WatchActions replay from seq 0, read to the last event by a gRPC client, at 10k / 100k
  events, and 1M with ``--full`` (about 5 minutes by itself here).

``--quick`` (under 2 minutes) keeps the small sizes: 1k / 10k agents, 100k audit rows,
100 / 10k lines, 10k / 100k events. Prints the table and writes bench/growth_results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench import growth_history, growth_scenarios, growth_seed, policygen, procs, scenarios, seed
from bench.growth_table import (
    AUDIT_ROWS,
    EVENTS,
    PAUSE_AGENTS,
    POLICY_LINES,
    exponents,
    label,
    render_rows,
    size_text,
)
from bench.load import percentile
from services.common.tokens import mint_user_token

RESULTS = Path(__file__).resolve().parent / "growth_results.json"
USER = "bench-user"
LIST_TARGETS = 1000  # target ids the audit rows are spread over (as in `make bench`)
# WatchActions replays at most 5,000 events/s per process by default (a budget that keeps
# replays from starving Execute, services/actions/events/replay.py); the table measures
# what a replay costs, so the budget is lifted for its action service.
UNCAPPED_REPLAY = "1000000000"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The sizes and sample counts of one mode."""

    pause_agents: tuple[int, ...]
    audit_rows: tuple[int, ...]
    policy_lines: tuple[int, ...]
    verify_events: tuple[int, ...]
    watch_events: tuple[int, ...]
    pause_rounds: tuple[int, ...]  # per size of pause_agents
    list_calls: int
    check_calls: int
    check_rounds: int


def plan(*, full: bool, quick: bool) -> Plan:
    """The sizes and sample counts of a mode.

    Args:
        full: Every size (10M audit rows, the 1M-event replay).
        quick: The small sizes only (under two minutes).

    Returns:
        The plan; neither flag: every size but the two that ``full`` adds.

    Raises:
        ValueError: Both ``full`` and ``quick``.
    """
    if full and quick:
        raise ValueError("--full and --quick exclude each other")
    if quick:
        return Plan(
            PAUSE_AGENTS[:2],
            AUDIT_ROWS[:1],
            POLICY_LINES[:2],
            EVENTS[:2],
            EVENTS[:2],
            (9, 5),
            400,
            600,
            3,
        )
    rows = AUDIT_ROWS if full else AUDIT_ROWS[:2]
    watch = EVENTS if full else EVENTS[:2]
    return Plan(PAUSE_AGENTS, rows, POLICY_LINES, EVENTS, watch, (9, 5, 3), 1000, 2000, 4)


def _log(message: str) -> None:
    print(f"[growth {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class _Run:
    """What every phase shares: the secrets, the log directory, the results so far."""

    server_dsn: str
    work: Path
    jwt_secret: str = dataclasses.field(default_factory=growth_scenarios.new_secret)
    service_secret: str = dataclasses.field(default_factory=growth_scenarios.new_secret)
    out: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def user_token(self) -> str:
        """A user token for ``bench-user`` (admin in every workspace of the 50-line policy)."""
        return mint_user_token(self.jwt_secret, USER)

    @contextlib.contextmanager
    def actions_service(
        self, name: str, dsn: str, policy_target: str, extra: dict[str, str] | None = None
    ) -> Iterator[procs.Service]:
        """The action service on ``dsn``, asking ``policy_target``."""
        env = {
            "FLEETWARD_METRICS_PORT": "0",
            "FLEETWARD_SERVICE_JWT_SECRET": self.service_secret,
            "DATABASE_URL": dsn,
            "FLEETWARD_ACTIONS_ADDR": "127.0.0.1:0",
            "FLEETWARD_POLICY_TARGET": policy_target,
            "FLEETWARD_JWT_SECRET": self.jwt_secret,
            **(extra or {}),
        }
        with procs.service(name, "services.actions", env, self.work) as service:
            yield service

    @contextlib.contextmanager
    def small_policy(self) -> Iterator[procs.Service]:
        """The 50-line policy service of `make bench`, ``bench-user`` admin everywhere."""
        small = policygen.generate(rules=50, links=60, seed=11)
        small = dataclasses.replace(small, lines=(*small.lines, f"g, {USER}, admin, *"))
        directory = policygen.write_policy_dir(self.work / "growth-policy50", small)
        env = {
            "FLEETWARD_METRICS_PORT": "0",
            "FLEETWARD_SERVICE_JWT_SECRET": self.service_secret,
            "FLEETWARD_POLICY_ADDR": "127.0.0.1:0",
            "FLEETWARD_POLICY_WATCH": "0",
            "FLEETWARD_POLICY_ALLOWED_CALLERS": "svc:actions,svc:bench",
            "FLEETWARD_POLICY_DIR": str(directory),
            "FLEETWARD_POLICY_DECISION_LOG": str(self.work / "growth-decisions50.jsonl"),
        }
        with procs.service("growth-policy50", "services.policy", env, self.work) as service:
            yield service


async def _checks(run: _Run, sizes: tuple[int, ...], calls: int, rounds: int) -> None:
    _log(f"check: policy services of {', '.join(map(label, sizes))} lines")
    with growth_scenarios.policy_services(sizes, run.service_secret, run.work, {}) as services:
        _log("check: services up")
        p50s = await growth_scenarios.check_p50s_ms(services, run.service_secret, calls, rounds)
        for policy in services:
            run.out[f"growth_policy_rss_mb_{label(policy.lines)}"] = policy.service.peak_rss_mb()
    for lines, (p50, p99) in p50s.items():
        run.out[f"growth_check_p50_ms_{label(lines)}"] = p50
        run.out[f"growth_check_p99_ms_{label(lines)}"] = p99


async def _pauses(
    run: _Run,
    dsn: str,
    services: tuple[procs.Service, procs.Service],
    workspaces: dict[int, uuid.UUID],
    rounds: tuple[int, ...],
) -> None:
    actions, policy = services
    for (agents, workspace), times in zip(workspaces.items(), rounds, strict=True):
        begun = time.perf_counter()
        pauses = await growth_scenarios.fleet_pauses(
            actions.target, run.user_token, dsn, workspace, times, [actions.pid, policy.pid]
        )
        median = statistics.median(p.seconds for p in pauses)
        cpu = statistics.median(p.cpu_s for p in pauses)
        run.out[f"growth_fleet_pause_s_{label(agents)}"] = median
        run.out[f"growth_fleet_pause_ms_per_agent_{label(agents)}"] = median * 1000 / agents
        run.out[f"growth_fleet_pause_cpu_s_{label(agents)}"] = cpu
        _log(
            f"fleet pause of {agents:,} agents: {median:.3f} s, CPU {cpu:.3f} s (rounds "
            f"{', '.join(f'{p.seconds:.3f}/{p.cpu_s:.3f}' for p in pauses)}; "
            f"{time.perf_counter() - begun:.0f} s)"
        )


async def _list_actions(
    run: _Run, dsn: str, target: str, workspace: uuid.UUID, sizes: tuple[int, ...], calls: int
) -> None:
    newest = datetime.now(UTC)
    have = 0
    for rows in sizes:
        begun = time.perf_counter()
        conn = await asyncpg.connect(dsn)
        try:
            await growth_seed.grow_audit_rows(conn, workspace, have, rows, LIST_TARGETS, newest)
        finally:
            await conn.close()
        seconds = time.perf_counter() - begun
        run.out[f"growth_seed_audit_rows_s_{label(rows)}"] = round(seconds, 1)
        _log(f"list actions: {rows - have:,} more audit rows ({rows:,} in all) in {seconds:.1f} s")
        have = rows
        times = await scenarios.list_actions_latencies_ms(
            target, run.user_token, workspace, LIST_TARGETS, calls, "target"
        )
        run.out[f"growth_list_actions_p99_ms_{label(rows)}"] = percentile(times, 99)
        run.out[f"growth_list_actions_p50_ms_{label(rows)}"] = percentile(times, 50)
        plan_text = await scenarios.list_actions_plan(dsn, workspace, "target")
        match = re.search(r"Execution Time: ([0-9.]+) ms", plan_text)
        run.out[f"growth_list_actions_sql_ms_{label(rows)}"] = (
            float(match.group(1)) if match else math.nan
        )
        _log(
            f"list actions at {rows:,} rows: p99 {percentile(times, 99):.2f} ms; plan:\n{plan_text}"
        )


async def _fleet_and_list(run: _Run, policy: procs.Service, todo: Plan) -> None:
    """Fleet pauses and ListActions pages: one scratch database, one action service."""
    async with procs.scratch_database(run.server_dsn) as dsn:
        ids = seed.workspace_ids(len(todo.pause_agents), tag=21)
        pause_ws = dict(zip(todo.pause_agents, ids, strict=True))
        list_ws = seed.workspace_ids(1, tag=22)[0]
        conn = await asyncpg.connect(dsn)
        try:
            for agents, workspace in pause_ws.items():
                await seed.seed_agents(conn, [workspace], agents, 10)
            await seed.seed_agents(conn, [list_ws], LIST_TARGETS, 10)
        finally:
            await conn.close()
        with run.actions_service("growth-actions", dsn, policy.target) as actions:
            _log("fleet pause")
            await _pauses(run, dsn, (actions, policy), pause_ws, todo.pause_rounds)
            await _list_actions(run, dsn, actions.target, list_ws, todo.audit_rows, todo.list_calls)
        if todo.audit_rows[-1] < AUDIT_ROWS[-1]:
            # What the next size would take to seed, at the rate of the last step.
            last = run.out[f"growth_seed_audit_rows_s_{label(todo.audit_rows[-1])}"]
            step = todo.audit_rows[-1] - (todo.audit_rows[-2] if len(todo.audit_rows) > 1 else 0)
            following = todo.audit_rows[-1] * 10
            estimate = last * (following - todo.audit_rows[-1]) / step
            run.out[f"growth_seed_audit_rows_s_{label(following)}_estimate"] = round(estimate)


async def _grow_history(dsn: str, workspace: uuid.UUID, have: int, events: int) -> int:
    """Append whole actions until the chain has ``events`` events; the new last seq."""
    conn = await asyncpg.connect(dsn)
    try:
        todo = growth_history.actions_for(events, have)
        last = await growth_history.append_actions(conn, workspace, todo)
        for table in ("action_audit_log", "action_targets", "action_events"):
            await conn.execute(f"ANALYZE {table}", timeout=3600)
    finally:
        await conn.close()
    return last


async def _replay(
    run: _Run, dsn: str, actions: procs.Service, workspace: uuid.UUID, events: int, last: int
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        meter = growth_scenarios.CpuMeter(conn, [actions.pid, os.getpid()])
        replay = await growth_scenarios.watch_replay(
            actions.target, run.user_token, workspace, last, meter
        )
    finally:
        await conn.close()
    run.out[f"growth_watch_replay_events_per_s_{label(events)}"] = replay.events_per_s
    run.out[f"growth_watch_replay_cpu_us_per_event_{label(events)}"] = replay.cpu_us_per_event
    _log(
        f"WatchActions replay: {replay.events_per_s:,.0f} events/s, "
        f"{replay.cpu_us_per_event:.0f} µs CPU per event"
    )


async def _history(run: _Run, policy_target: str, todo: Plan) -> None:
    """``audit verify`` and WatchActions replays: another scratch database and service."""
    async with procs.scratch_database(run.server_dsn) as dsn:
        workspace = seed.workspace_ids(1, tag=23)[0]
        conn = await asyncpg.connect(dsn)
        try:
            await seed.seed_agents(conn, [workspace], 10, 1)
        finally:
            await conn.close()
        extra = {"FLEETWARD_WATCH_REPLAY_RATE": UNCAPPED_REPLAY}
        with run.actions_service("growth-actions-history", dsn, policy_target, extra) as actions:
            last = 0
            for events in sorted({*todo.verify_events, *todo.watch_events}):
                begun = time.perf_counter()
                last = await _grow_history(dsn, workspace, last, events)
                seconds = time.perf_counter() - begun
                run.out[f"growth_seed_events_s_{label(events)}"] = round(seconds, 1)
                _log(f"history: {last:,} chained events ({seconds:.1f} s)")
                if events in todo.verify_events:
                    done = await growth_scenarios.verify_events(dsn, workspace, last)
                    run.out[f"growth_verify_events_per_s_{label(events)}"] = done.events_per_s
                    run.out[f"growth_verify_cpu_us_per_event_{label(events)}"] = (
                        done.cpu_us_per_event
                    )
                    _log(
                        f"audit verify: {done.events_per_s:,.0f} events/s, "
                        f"{done.cpu_us_per_event:.0f} µs CPU per event"
                    )
                if events in todo.watch_events:
                    await _replay(run, dsn, actions, workspace, events, last)


async def run_growth(dsn: str, *, full: bool, quick: bool) -> dict[str, float]:
    """Measure the growth table.

    Args:
        dsn: The PostgreSQL server (``DATABASE_URL``) the scratch databases are made on;
            each phase makes its own and drops it at the end.
        full: Also the largest sizes, which take long: 10M audit rows (about 9 minutes to
            seed here) and the replay of 1M events (about 7 minutes).
        quick: Only the small sizes (under two minutes).

    Returns:
        Flat figures, ``growth_<figure>_<size>`` (e.g. ``growth_fleet_pause_s_1k``), the
        seeding times (``growth_seed_*``), each row's exponent
        (``growth_<figure>_exponent``), the mode and the run's wall time and load.
    """
    todo = plan(full=full, quick=quick)
    begun = time.perf_counter()
    run = _Run(dsn, Path(tempfile.mkdtemp(prefix="fleetward-growth-")))
    run.out.update(
        growth_quick=float(quick), growth_full=float(full), growth_load_before=os.getloadavg()[0]
    )
    _log(f"logs in {run.work}")
    await _checks(run, todo.policy_lines, todo.check_calls, todo.check_rounds)
    with run.small_policy() as policy:
        await _fleet_and_list(run, policy, todo)
        await _history(run, policy.target, todo)
    run.out.update(exponents(run.out))
    run.out["growth_load_after"] = os.getloadavg()[0]
    run.out["growth_seconds"] = round(time.perf_counter() - begun, 1)
    return run.out


def render_growth(results: Mapping[str, float]) -> str:
    """The table: one row per measurement, a column per size, and the growth verdict.

    Args:
        results: What :func:`run_growth` returned (or growth_results.json).

    Returns:
        The table and a few lines on the run (mode, time, machine load, seeding).
    """
    mode = (
        "full"
        if results.get("growth_full")
        else "quick"
        if results.get("growth_quick")
        else "default"
    )
    seconds = results.get("growth_seconds", math.nan)
    before = results.get("growth_load_before", math.nan)
    after = results.get("growth_load_after", math.nan)
    lines = [
        f"How cost grows with the work ({mode} run, {seconds:.0f} s; "
        f"load average {before:.1f} before, {after:.1f} after)",
        *render_rows(results),
        "growth: k of cost ∝ size^k between the smallest and largest size measured (cost: the "
        "figure, or its inverse for a rate); flat k < 0.15, sub-linear < 0.85, linear ≤ 1.15, "
        "else worse than linear. —: not measured in this mode.",
    ]
    lines.extend(_seeding(results))
    return "\n".join(lines)


def _seeding(results: Mapping[str, float]) -> list[str]:
    """What the seeding took, step by step, and the estimate for the size not seeded."""
    steps = [
        f"to {size_text(size)} {what} {seconds:.0f} s"
        for name, what, sizes in (
            ("audit_rows", "audit rows", AUDIT_ROWS),
            ("events", "events", EVENTS),
        )
        for size in sizes
        if (seconds := results.get(f"growth_seed_{name}_s_{label(size)}")) is not None
    ]
    lines = ["seeding, each step: " + "; ".join(steps)] if steps else []
    for size in AUDIT_ROWS:
        estimate = results.get(f"growth_seed_audit_rows_s_{label(size)}_estimate")
        if estimate is not None:
            lines.append(
                f"{size_text(size)} audit rows: not seeded; at the last step's rate the step "
                f"would take at least {estimate / 60:.0f} min (more: its index builds sort "
                "the whole table)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the growth table, print it, write bench/growth_results.json.

    Args:
        argv: The command line's arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0, or 2 without ``DATABASE_URL``.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.growth")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes only (< 2 min)")
    mode.add_argument("--full", action="store_true", help="also 10M audit rows (make bench FULL=1)")
    args = parser.parse_args(argv)
    server = os.environ.get("DATABASE_URL")
    if not server:
        print(
            "DATABASE_URL is unset (a PostgreSQL server to make scratch databases on)",
            file=sys.stderr,
        )
        return 2
    results = asyncio.run(run_growth(server, full=args.full, quick=args.quick))
    print(render_growth(results))
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
