"""The bench table: each figure, its floor, the ratio, the target and whether it is met."""

from __future__ import annotations

import math
from typing import Any

# (key, label, unit, floor key or None, target as (kind, bound)): kind "max" = figure ≤
# bound, "min" = figure ≥ bound, "ratio" = figure / floor ≤ bound, "min_ratio" = figure /
# floor ≥ bound. A row with a floor key prints figure / floor in the ratio column (for the
# two-replica rows the "floor" is the same figure with one replica).
ROWS: list[tuple[str, str, str, str | None, tuple[str, float] | None]] = [
    ("floor_echo_p50_ms", "floor: bare grpc.aio echo p50", "ms", None, None),
    ("floor_enforce_p50_ms", "floor: pycasbin enforce p50 (50 lines)", "ms", None, None),
    ("floor_enforce_10k_p50_ms", "pycasbin enforce p50 (10k lines)", "ms", None, None),
    ("floor_execute_p50_ms", "floor: execute (2 echo+enforce+2 commits) p50", "ms", None, None),
    ("floor_echo_per_s", "floor: bare echo throughput (64 in flight)", "/s", None, None),
    ("check_p50_ms", "Check p50 (50 lines + 60 links)", "ms", "floor_echo_p50_ms", ("ratio", 1.2)),
    ("check_p99_ms_50", "Check p99 (50 lines + 60 links)", "ms", None, None),
    (
        "check_per_s",
        "Check throughput (50 lines, 64 in flight)",
        "/s",
        "floor_echo_per_s",
        ("min_ratio", 0.75),
    ),
    (
        "check_p50_ms_10k",
        "Check p50 (10k lines + 1k links)",
        "ms",
        "floor_echo_p50_ms",
        ("ratio", 1.2),
    ),
    ("check_p99_ms_10k", "Check p99 (10k lines + 1k links)", "ms", None, ("max", 2.0)),
    (
        "check_per_s_10k",
        "Check throughput (10k lines, 64 in flight)",
        "/s",
        "floor_echo_per_s",
        ("min_ratio", 0.75),
    ),
    ("check_resources_10k_ms", "CheckResources of 10,000 paths (50 lines)", "ms", None, None),
    ("check_resources_10k_ms_10k", "CheckResources of 10,000 paths (10k lines)", "ms", None, None),
    ("execute_p50_ms", "Execute p50 (sequential)", "ms", "floor_execute_p50_ms", ("ratio", 1.2)),
    ("execute_p99_ms", "Execute p99 (sequential)", "ms", None, None),
    ("floor_execute_per_s", "floor: execute throughput (64 in flight)", "/s", None, None),
    (
        "execute_per_s",
        "Execute throughput (64 in flight, 16 ws)",
        "/s",
        "floor_execute_per_s",
        ("min_ratio", 0.6),
    ),
    ("execute_load_p50_ms", "Execute p50 under that load", "ms", None, None),
    (
        "cpu_ms_per_execute_actions",
        "  CPU per Execute under load: action service",
        "ms",
        None,
        None,
    ),
    ("cpu_ms_per_execute_policy", "  CPU per Execute under load: policy service", "ms", None, None),
    (
        "cpu_ms_per_execute_postgres",
        "  CPU per Execute under load: postgres",
        "ms",
        "floor_cpu_ms_per_execute_postgres",
        ("ratio", 1.5),
    ),
    ("floor_cpu_ms_per_execute_echo", "  floor CPU per call under load: echo", "ms", None, None),
    (
        "floor_cpu_ms_per_execute_postgres",
        "  floor CPU per call under load: postgres",
        "ms",
        None,
        None,
    ),
    ("cores_actions", "  cores busy: action service", "", None, None),
    ("cores_postgres", "  cores busy: postgres", "", None, None),
    ("cores_machine", "  cores busy: whole machine", "", None, None),
    ("execute_per_s_one_workspace", "Execute throughput (64 in flight, 1 ws)", "/s", None, None),
    (
        "execute_per_s_two_replicas",
        "Execute throughput, 2 replicas (ratio: to 1)",
        "/s",
        "execute_per_s",
        None,
    ),
    (
        "cpu_ms_per_execute_actions_a_two_replicas",
        "  CPU per Execute it served: replica A",
        "ms",
        "cpu_ms_per_execute_actions",
        None,
    ),
    (
        "cpu_ms_per_execute_actions_b_two_replicas",
        "  CPU per Execute it served: replica B",
        "ms",
        "cpu_ms_per_execute_actions",
        None,
    ),
    (
        "cpu_ms_per_execute_postgres_two_replicas",
        "  CPU per Execute: postgres",
        "ms",
        "cpu_ms_per_execute_postgres",
        None,
    ),
    ("cores_actions_a_two_replicas", "  cores busy: replica A", "", None, None),
    ("cores_actions_b_two_replicas", "  cores busy: replica B", "", None, None),
    ("cores_postgres_two_replicas", "  cores busy: postgres", "", None, None),
    ("cores_machine_two_replicas", "  cores busy: whole machine", "", None, None),
    ("list_actions_p50_ms_1m", "ListActions p50, page by target", "ms", None, None),
    ("list_actions_p99_ms_1m", "ListActions p99, page by target", "ms", None, ("max", 10.0)),
    ("list_actions_by_type_p99_ms_1m", "ListActions p99, page by type", "ms", None, ("max", 10.0)),
    (
        "fleet_pause_10k_s",
        "fleet pause of 10,000 agents (10,000 decisions)",
        "s",
        None,
        ("max", 1.0),
    ),
    ("rss_mb_actions", "peak RSS action service", "MB", None, ("max", 200)),
    ("rss_mb_policy", "peak RSS policy service (max of both)", "MB", None, ("max", 200)),
]


def _met(value: float, ratio: float | None, target: tuple[str, float] | None) -> str:
    """The target column: the bound and met/MISSED; ratio targets judge the printed ratio
    (figure / floor, rounded to 2 decimals, as in results.json)."""
    if target is None or math.isnan(value):
        return ""
    kind, bound = target
    if kind in ("ratio", "min_ratio"):
        sign = "≤" if kind == "ratio" else "≥"
        if ratio is None or math.isnan(ratio):
            return f"{sign} {bound}x floor: no floor"
        ok = ratio <= bound if kind == "ratio" else ratio >= bound
        return f"{sign} {bound}x floor: {'met' if ok else 'MISSED'}"
    ok = value <= bound if kind == "max" else value >= bound
    sign = "≤" if kind == "max" else "≥"
    return f"{sign} {bound:g}: {'met' if ok else 'MISSED'}"


def render(results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The printed table (with the EXPLAIN plans) and the flat JSON (numbers and flags)."""
    flat = {k: v for k, v in results.items() if isinstance(v, bool | int | float)}
    for key, _, _, floor_key, _ in ROWS:
        if floor_key and key in flat and flat.get(floor_key):
            flat[f"{key}_ratio"] = round(flat[key] / flat[floor_key], 2)
    flat = {k: round(v, 3) if isinstance(v, float) else v for k, v in flat.items()}
    lines = [f"{'figure':<48} {'value':>10} {'ratio':>7}  target", "-" * 92]
    for key, label, unit, _, target in ROWS:
        value = flat.get(key, float("nan"))
        ratio = flat.get(f"{key}_ratio")
        ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
        lines.append(
            f"{label:<48} {value:>8.2f}{unit:<3}{ratio_text:>6}  {_met(value, ratio, target)}"
        )
    size = results.get("list_actions_rows", 0)
    lines.append(
        f"(ListActions over {size:,} audit rows; quick={results.get('quick')};"
        f" uvloop={results.get('uvloop')}; tracing={results.get('tracing')})"
    )
    if results.get("tracing"):
        lines.append(
            f"(tracing: {results.get('otlp_spans', 0):,} spans in"
            f" {results.get('otlp_exports', 0):,} OTLP exports reached the sink)"
        )
    for key in ("list_actions_plan_target", "list_actions_plan_type"):
        if key in results:
            lines += ["", f"EXPLAIN ANALYZE ({key.rsplit('_', 1)[1]} filter):", results[key]]
    return "\n".join(lines), flat
