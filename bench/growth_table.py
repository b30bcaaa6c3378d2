"""The growth table: its rows, their result keys, and the verdict on how each cost grows.

The verdict is the exponent ``k`` of cost against size between the smallest and the
largest size measured, ``cost ∝ size^k``: ``k = ln(c_large / c_small) / ln(n_large /
n_small)``. The cost is the figure itself for a time (seconds per pause, milliseconds per
call) and its inverse for a rate (events/s: the time per event). So for a rate, "flat"
means the rate holds as the work grows, and for a fleet pause, "linear" means each agent
costs the same however large the fleet. Bands: ``k < 0.15`` flat (a tenfold size moving
the cost by less than 41 %), ``k < 0.85`` sub-linear, ``k <= 1.15`` linear, above that
worse than linear.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FLAT_BELOW = 0.15
SUBLINEAR_BELOW = 0.85
LINEAR_UP_TO = 1.15


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure measured at several sizes."""

    key: str  # growth_<key>_<size label>
    title: str
    sizes: tuple[int, ...]
    size_unit: str
    rate: bool = False  # a per-second figure: its cost is its inverse

    def result_key(self, size: int) -> str:
        """The flat result key of this figure at ``size``.

        Args:
            size: One of the row's sizes.

        Returns:
            ``growth_<key>_<label(size)>``, e.g. ``growth_fleet_pause_s_1k``.
        """
        return f"growth_{self.key}_{label(size)}"


PAUSE_AGENTS = (1_000, 10_000, 100_000)
AUDIT_ROWS = (100_000, 1_000_000, 10_000_000)
POLICY_LINES = (100, 10_000, 100_000)
EVENTS = (10_000, 100_000, 1_000_000)

ROWS = (
    Row("fleet_pause_s", "fleet pause incl. its per-agent decisions, s", PAUSE_AGENTS, "agents"),
    Row("fleet_pause_ms_per_agent", "  the same per agent, ms", PAUSE_AGENTS, "agents"),
    Row("fleet_pause_cpu_s", "  its CPU, both services + PostgreSQL, s", PAUSE_AGENTS, "agents"),
    Row("list_actions_p99_ms", "ListActions p99, page by target, ms", AUDIT_ROWS, "audit rows"),
    Row("list_actions_p50_ms", "  ListActions p50, ms", AUDIT_ROWS, "audit rows"),
    Row("list_actions_sql_ms", "  its statement in PostgreSQL, ms", AUDIT_ROWS, "audit rows"),
    Row("check_p50_ms", "Check p50, ms", POLICY_LINES, "policy lines"),
    Row("policy_rss_mb", "  policy service peak RSS, MB", POLICY_LINES, "policy lines"),
    Row("verify_events_per_s", "audit verify, events/s", EVENTS, "events", rate=True),
    Row(
        "verify_cpu_us_per_event",
        "  its CPU per event, verifier + PostgreSQL, µs",
        EVENTS,
        "events",
    ),
    Row("watch_replay_events_per_s", "WatchActions replay, events/s", EVENTS, "events", rate=True),
    Row(
        "watch_replay_cpu_us_per_event",
        "  its CPU per event, service + client + PostgreSQL, µs",
        EVENTS,
        "events",
    ),
)


def label(size: int) -> str:
    """A size as a key suffix.

    Args:
        size: A count (agents, rows, lines, events).

    Returns:
        ``100``, ``1k``, ``10k``, ``100k``, ``1m``, ``10m``, …
    """
    for factor, suffix in ((1_000_000, "m"), (1_000, "k")):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def exponent(row: Row, results: Mapping[str, float]) -> float | None:
    """The exponent of the row's growth.

    Args:
        row: The measurement.
        results: The flat results (sizes not measured are absent or not positive).

    Returns:
        ``k`` of ``cost ∝ size^k`` between the smallest and largest size measured; None
        with fewer than two sizes.
    """
    measured = [
        (size, results[row.result_key(size)])
        for size in row.sizes
        if _usable(results.get(row.result_key(size)))
    ]
    if len(measured) < 2:
        return None
    (small, at_small), (large, at_large) = measured[0], measured[-1]
    cost_small, cost_large = (1 / at_small, 1 / at_large) if row.rate else (at_small, at_large)
    return math.log(cost_large / cost_small) / math.log(large / small)


def verdict(k: float | None) -> str:
    """The verdict on an exponent.

    Args:
        k: The exponent (None: fewer than two sizes).

    Returns:
        ``flat``, ``sub-linear``, ``linear`` or ``worse than linear``, with ``k``.
    """
    if k is None:
        return "n/a (one size)"
    if k < FLAT_BELOW:
        name = "flat"
    elif k < SUBLINEAR_BELOW:
        name = "sub-linear"
    elif k <= LINEAR_UP_TO:
        name = "linear"
    else:
        name = "worse than linear"
    return f"{name} (k = {round(k, 2) + 0.0:.2f})"  # + 0.0: no "-0.00"


def exponents(results: Mapping[str, float]) -> dict[str, float]:
    """Every row's exponent.

    Args:
        results: The flat results.

    Returns:
        ``growth_<key>_exponent`` for each row with two sizes or more.
    """
    out = {}
    for row in ROWS:
        k = exponent(row, results)
        if k is not None:
            out[f"growth_{row.key}_exponent"] = round(k, 3)
    return out


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _figure(value: float | None) -> str:
    if value is None or not _usable(value):
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"


def size_text(size: int) -> str:
    """A size as the table writes it.

    Args:
        size: A count.

    Returns:
        Its :func:`label`, with millions as ``1M``, ``10M``.
    """
    return label(size).upper() if size >= 1_000_000 else label(size)


def _sizes(sizes: Sequence[int]) -> str:
    return " / ".join(size_text(s) for s in sizes)


def render_rows(results: Mapping[str, float]) -> list[str]:
    """The table's lines.

    Args:
        results: The flat results.

    Returns:
        A header, a rule, then one line per row: a column per size and the verdict.
    """
    title_width = max(len(f"{r.title} ({_sizes(r.sizes)} {r.size_unit})") for r in ROWS)
    header = (
        f"{'measurement (sizes)':<{title_width}}  {'smallest':>9}  {'10x':>9}  {'100x':>9}  growth"
    )
    lines = [header, "-" * (len(header) + 22)]
    for row in ROWS:
        title = f"{row.title} ({_sizes(row.sizes)} {row.size_unit})"
        cells = [_figure(results.get(row.result_key(size))) for size in row.sizes]
        cells += [""] * (3 - len(cells))
        k = exponent(row, results)
        lines.append(
            f"{title:<{title_width}}  {cells[0]:>9}  {cells[1]:>9}  {cells[2]:>9}  {verdict(k)}"
        )
    return lines
