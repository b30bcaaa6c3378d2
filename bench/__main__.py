"""``python -m bench [--quick]`` (``make bench``): every figure of the method, in one run.

The method is docs/architecture.md §11.

Needs DATABASE_URL (``make bench`` runs it under ``services.dev with-db``: embedded
PostgreSQL unless set). Creates and migrates a scratch database, starts the action
service and two policy services (50 and 10,000 lines) as separate processes, loads them
from spawned processes, prints one table and writes ``bench/results.json``. A full run
(not ``--quick``) then runs the slow-marked equivalence tests (10,000 random requests per
policy, the indexed decision path against plain pycasbin) and records the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import floors, policygen, procs, scenarios, seed
from bench.growth import render_growth, run_growth
from bench.load import LoadResult, percentile, run_load
from bench.report import render
from services.common.tokens import mint_service_token, mint_user_token
from services.dev.processes import REPO, free_port

RESULTS = Path(__file__).resolve().parent / "results.json"
EQUIVALENCE_TESTS = REPO / "tests" / "policy" / "test_equivalence.py"
USER = "bench-user"
WORKSPACES, AGENTS = 16, 64
IN_FLIGHT, LOADERS = 64, 2
# The floor's database connections under load: as many as the action service's pool
# (FLEETWARD_DB_POOL_SIZE, default 20), split over the loaders.
FLOOR_CONNECTIONS = 20


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return dict(calls=300, load_s=4, audit_rows=100_000, pause_agents=10_000, rounds=1)
    return dict(calls=2000, load_s=12, audit_rows=1_000_000, pause_agents=10_000, rounds=3)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _policy_dirs(
    root: Path,
) -> tuple[Path, Path, policygen.GeneratedPolicy, policygen.GeneratedPolicy]:
    small = policygen.small(USER)
    large = policygen.generate(rules=10_000, links=1_000)
    return (
        policygen.write_policy_dir(root / "policy50", small),
        policygen.write_policy_dir(root / "policy10k", large),
        small,
        large,
    )


def _record_load(
    out: dict[str, Any], load: LoadResult, spent: dict[str, float], prefix: str, suffix: str = ""
) -> None:
    """CPU per call and cores busy of each process group measured over ``load``'s window.

    ``{prefix}cpu_ms_per_execute_{name}{suffix}``: CPU ms per completed call of each
    group (and of the loaders, the client side: ``loader``); ``{prefix}cores_{name}
    {suffix}``: CPU seconds per second of the window (``machine``: all cores, anything
    that ran on them).
    """
    spent = {**procs.CpuMeter.totals(spent), "loader": load.client_cpu_s}
    for name, seconds in spent.items():
        if name != "machine":
            out[f"{prefix}cpu_ms_per_execute_{name}{suffix}"] = load.per_call_ms(seconds)
        out[f"{prefix}cores_{name}{suffix}"] = seconds / load.duration_s


def _bound_subject(policy: policygen.GeneratedPolicy) -> tuple[str, str]:
    """A (subject, workspace) the policy binds, so CheckResources walks its roles."""
    for line in policy.lines:
        fields = line.split(", ")
        if fields[0] == "g" and fields[1].startswith("user-") and fields[3] != "*":
            return fields[1], fields[3]
    raise RuntimeError("the generated policy binds no user to a workspace")


async def run(quick: bool, uvloop: bool = False, tracing: bool = False) -> dict[str, Any]:
    """The whole bench; returns the results.

    ``tracing``: both services trace every request (sampler ``always_on``) and export over
    OTLP to ``bench.otlp_sink``, which counts and drops.
    """
    size = _sizes(quick)
    calls = size["calls"]
    out: dict[str, Any] = {"quick": quick, "uvloop": uvloop, "tracing": tracing}
    jwt_secret, service_secret = secrets.token_hex(32), secrets.token_hex(32)
    user_token = mint_user_token(jwt_secret, USER)
    service_token = mint_service_token(service_secret, "bench")
    work = Path(tempfile.mkdtemp(prefix="fleetward-bench-"))
    dir50, dir10k, small, large = _policy_dirs(work)
    items50 = scenarios.check_items(small, 5000, seed=1)
    items10k = scenarios.check_items(large, 5000, seed=2)

    async with procs.scratch_database(os.environ["DATABASE_URL"]) as dsn:
        _log(f"scratch database ready; logs in {work}")
        fleet_ws = seed.workspace_ids(1, tag=1)[0]
        list_ws = seed.workspace_ids(1, tag=2)[0]
        load_ws = seed.workspace_ids(WORKSPACES, tag=3)
        conn = await asyncpg.connect(dsn)
        try:
            await seed.seed_agents(conn, load_ws, AGENTS, 4)
            await seed.seed_agents(conn, [fleet_ws], size["pause_agents"], 10)
            await seed.seed_agents(conn, [list_ws], 1000, 10)
            begun = time.perf_counter()
            await seed.seed_audit_rows(conn, list_ws, size["audit_rows"], 1000)
            _log(f"{size['audit_rows']} audit rows loaded in {time.perf_counter() - begun:.1f} s")
        finally:
            await conn.close()

        server = await procs.PostgresServer.of(dsn)
        with (
            procs.otlp_sink(tracing) as sink,  # stops last: the services flush into it
            procs.echo_server() as echo,
            procs.service(
                "policy50",
                "services.policy",
                {
                    **procs.policy_env(service_secret, dir50, work / "decisions50.jsonl"),
                    **sink.env,
                },
                work,
                uvloop=uvloop,
            ) as policy50,
            procs.service(
                "policy10k",
                "services.policy",
                {
                    **procs.policy_env(service_secret, dir10k, work / "decisions10k.jsonl"),
                    **sink.env,
                },
                work,
                uvloop=uvloop,
            ) as policy10k,
            procs.service(
                "actions",
                "services.actions",
                actions_env := {
                    **procs.actions_env(service_secret, jwt_secret, dsn, policy50.target),
                    **sink.env,
                    # Its Execute count, for the two-replica run's split (scraped outside
                    # the measuring windows).
                    "FLEETWARD_METRICS_PORT": str(metrics_port := free_port()),
                },
                work,
                uvloop=uvloop,
            ) as actions,
        ):
            _log("services up; floors")
            echo_ms = await floors.echo_latencies_ms(echo.target, calls * 2)
            out["floor_echo_p50_ms"] = percentile(echo_ms, 50)
            enforcer50 = floors.plain_enforcer(dir50)
            out["floor_enforce_p50_ms"] = floors.enforce_p50_ms(enforcer50, items50, calls * 2)
            out["floor_enforce_10k_p50_ms"] = floors.enforce_p50_ms(
                floors.plain_enforcer(dir10k), items10k, 20 if quick else 60
            )
            floor_exec = await floors.execute_floor_ms(echo.target, dsn, enforcer50, items50, calls)
            out["floor_execute_p50_ms"] = percentile(floor_exec, 50)
            echo_load = run_load(
                "echo",
                echo.target,
                "",
                [()],
                in_flight=IN_FLIGHT,
                processes=LOADERS,
                duration_s=size["load_s"],
            )
            out["floor_echo_per_s"] = echo_load.per_s
            meter = procs.CpuMeter({"echo": echo.pid}, server)
            load = run_load(
                "floor_execute",
                echo.target,
                "",
                items50,
                in_flight=IN_FLIGHT,
                processes=LOADERS,
                duration_s=size["load_s"],
                sample=meter.sample,
                dsn=dsn,
                policy_dir=dir50,
                db_connections=FLOOR_CONNECTIONS,
            )
            out["floor_execute_per_s"] = load.per_s
            out["floor_execute_load_p50_ms"] = percentile(load.latencies_ms, 50)
            _record_load(out, load, load.sampled, "floor_")
            del enforcer50
            gc.collect()
            gc.freeze()  # keep the bench's own GC pauses out of the latencies below

            _log("check")
            for label, service, items in (("", policy50, items50), ("_10k", policy10k, items10k)):
                times, allowed = await scenarios.check_latencies_ms(
                    service.target, service_token, items, calls * 2
                )
                out[f"check_p50_ms{label}"] = percentile(times, 50)
                out[f"check_p99_ms{label or '_50'}"] = percentile(times, 99)
                out[f"check_allowed_share{label}"] = round(allowed, 3)
                load = run_load(
                    "check",
                    service.target,
                    service_token,
                    items,
                    in_flight=64,
                    processes=2,
                    duration_s=size["load_s"],
                )
                out[f"check_per_s{label}"] = load.per_s
                out[f"check_errors{label}"] = load.errors

            _log("check resources")
            for label, service, policy, subject, workspace in (
                ("", policy50, small, USER, str(fleet_ws)),
                ("_10k", policy10k, large, *_bound_subject(large)),
            ):
                times = await scenarios.check_resources_ms(
                    service.target,
                    service_token,
                    subject,
                    workspace,
                    scenarios.agent_paths(policy, 10_000),
                    3 if quick else 10,
                )
                out[f"check_resources_10k_ms{label}"] = percentile(times, 50)

            _log("execute")
            times = await scenarios.execute_latencies_ms(
                actions.target, user_token, load_ws[0], AGENTS, calls
            )
            out["execute_p50_ms"] = percentile(times, 50)
            out["execute_p99_ms"] = percentile(times, 99)
            spread = [(str(w), f"agent-{a}") for w in load_ws for a in range(AGENTS)]
            pids = [actions.pid, policy50.pid]
            meter = procs.CpuMeter({"actions": actions.pid, "policy": policy50.pid}, server)
            cpu_before = procs.cpu_seconds(pids, include_postgres=True)
            load = run_load(
                "execute",
                actions.target,
                user_token,
                spread,
                in_flight=IN_FLIGHT,
                processes=LOADERS,
                duration_s=size["load_s"],
                sample=meter.sample,
            )
            out["execute_per_s"] = load.per_s
            cpu_after = procs.cpu_seconds(pids, include_postgres=True)
            _record_load(out, load, load.sampled, "")
            # The keys before 2026-12 (bench/README.md): CPU over the whole run_load,
            # warm-up and start-up included, and every postgres process of the machine.
            for name, key in (
                ("actions", str(pids[0])),
                ("policy", str(pids[1])),
                ("postgres", "postgres"),
            ):
                spent = cpu_after[key] - cpu_before[key]
                out[f"execute_cpu_ms_{name}"] = spent * 1000 / max(1, load.completed)
            out["execute_load_p50_ms"] = percentile(load.latencies_ms, 50)
            out["execute_errors"] = load.errors
            single = [(str(load_ws[1]), f"agent-{a}") for a in range(AGENTS)]
            load = run_load(
                "execute",
                actions.target,
                user_token,
                single,
                in_flight=64,
                processes=2,
                duration_s=size["load_s"],
            )
            out["execute_per_s_one_workspace"] = load.per_s
            out["execute_errors_one_workspace"] = load.errors

            _log("execute, two action-service replicas")
            second_port = free_port()
            with procs.service(
                "actions2",
                "services.actions",
                {**actions_env, "FLEETWARD_METRICS_PORT": str(second_port)},
                work,
                uvloop=uvloop,
            ) as actions2:
                _two_replicas(
                    out,
                    (actions, metrics_port),
                    (actions2, second_port),
                    policy50.pid,
                    server,
                    user_token,
                    spread,
                    size["load_s"],
                )

            _log("list actions")
            for by, key in (
                ("target", "list_actions_p99_ms_1m"),
                ("type", "list_actions_by_type_p99_ms_1m"),
            ):
                times = await scenarios.list_actions_latencies_ms(
                    actions.target, user_token, list_ws, 1000, calls // 4, by
                )
                out[key] = percentile(times, 99)
                out[key.replace("p99", "p50")] = percentile(times, 50)
                out[f"list_actions_plan_{by}"] = await scenarios.list_actions_plan(dsn, list_ws, by)
            out["list_actions_rows"] = size["audit_rows"]

            _log("fleet pause")
            pauses = await scenarios.fleet_pause_s(
                actions.target, user_token, fleet_ws, size["rounds"]
            )
            out["fleet_pause_10k_s"] = sorted(pauses)[len(pauses) // 2]

            out["rss_mb_actions"] = actions.peak_rss_mb()
            out["rss_mb_policy"] = max(policy50.peak_rss_mb(), policy10k.peak_rss_mb())
            out["rss_mb_policy_10k"] = policy10k.peak_rss_mb()
        out.update({f"otlp_{name}": value for name, value in sink.received.items()})
    return out


def _two_replicas(
    out: dict[str, Any],
    first: tuple[procs.Service, int],
    second: tuple[procs.Service, int],
    policy_pid: int,
    server: procs.PostgresServer,
    token: str,
    items: list[tuple[str, str]],
    duration_s: float,
) -> None:
    """Execute at 64 in flight over two action-service replicas (round robin per loader).

    ``execute_per_s_two_replicas``; CPU per Execute and cores busy of each replica
    (``actions_a``, ``actions_b``), the policy service and PostgreSQL. Each replica's CPU
    is divided by the Executes it served (its ``/metrics`` count, read before and after the
    load); ``execute_share_a_two_replicas`` is the first replica's share.
    """
    (replica_a, port_a), (replica_b, port_b) = first, second
    meter = procs.CpuMeter(
        {"actions_a": replica_a.pid, "actions_b": replica_b.pid, "policy": policy_pid}, server
    )
    counted = [procs.rpc_count(port, "Execute") for port in (port_a, port_b)]
    load = run_load(
        "execute",
        f"ipv4:{replica_a.target},{replica_b.target}",
        token,
        items,
        in_flight=IN_FLIGHT,
        processes=LOADERS,
        duration_s=duration_s,
        sample=meter.sample,
        round_robin=True,
    )
    served = [
        procs.rpc_count(port, "Execute") - n
        for port, n in zip((port_a, port_b), counted, strict=True)
    ]
    share_a = served[0] / max(1.0, sum(served))
    out["execute_per_s_two_replicas"] = load.per_s
    out["execute_load_p50_ms_two_replicas"] = percentile(load.latencies_ms, 50)
    out["execute_errors_two_replicas"] = load.errors
    out["execute_share_a_two_replicas"] = share_a
    _record_load(out, load, load.sampled, "", "_two_replicas")
    for name, share in (("actions_a", share_a), ("actions_b", 1 - share_a)):
        key = f"cpu_ms_per_execute_{name}_two_replicas"
        out[key] = out[key] / share if share else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Run the bench, print the table, write ``bench/results.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="CI smoke: < 2 min, smaller sizes")
    parser.add_argument(
        "--uvloop", action="store_true", help="run both services on uvloop (must be installed)"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="trace every request in both services into a local OTLP sink (make bench TRACING=1)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the growth table's largest sizes too (10M audit rows, 1M replayed events: ~25 min)",
    )
    parser.add_argument(
        "--no-growth",
        action="store_true",
        help="skip the table of how cost grows with the work (bench.growth)",
    )
    parser.add_argument(
        "--no-equivalence",
        action="store_true",
        help="skip the 10,000-request equivalence run that a full bench ends with (~10 min)",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is unset: run `make bench` (embedded PostgreSQL)", file=sys.stderr)
        return 2
    begun = time.perf_counter()
    results = asyncio.run(run(args.quick, args.uvloop, args.tracing))
    results["bench_seconds"] = round(time.perf_counter() - begun, 1)
    table, flat = render(results)
    print(table)
    RESULTS.write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")
    if not args.no_growth:
        _log("how cost grows with the work (bench.growth)")
        server = os.environ["DATABASE_URL"]
        growth = asyncio.run(run_growth(server, full=args.full, quick=args.quick))
        print(render_growth(growth))
        flat.update(growth)
        RESULTS.write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")
    if args.quick or args.no_equivalence:
        return 0
    passed = _slow_equivalence(flat)
    RESULTS.write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")
    return 0 if passed else 1


def _slow_equivalence(flat: dict[str, Any]) -> bool:
    """The slow-marked equivalence tests: 10,000 requests per policy, index vs plain enforce."""
    _log("equivalence: 10,000 random requests per policy against plain enforce (~10 min)")
    begun = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow"]
    done = subprocess.run([*command, str(EQUIVALENCE_TESTS)], cwd=REPO, check=False)
    flat["equivalence_slow_passed"] = done.returncode == 0
    flat["equivalence_slow_seconds"] = round(time.perf_counter() - begun, 1)
    passed = done.returncode == 0
    print(f"equivalence (10,000 requests per policy): {'passed' if passed else 'FAILED'}")
    return passed


if __name__ == "__main__":
    sys.exit(main())
