"""Counters the reliability and security tests record, printed as one table at the end."""

from __future__ import annotations

from collections import Counter

# Rows of the summary table, in order.
ROWS = (
    ("requests", "requests sent"),
    ("retries", "retries"),
    ("kills", "kills survived"),
    ("faults", "faults injected"),
    ("bad_inputs", "bad inputs tried"),
    ("internal_seen", "INTERNAL/UNKNOWN answers to bad input"),
    ("lookalikes", "look-alike subjects refused"),
    ("watch_streams", "watch streams held at once"),
    ("checks", "invariant checks run"),
    ("violations", "invariant violations"),
    ("leaks", "secrets or tokens in logs"),
)

COUNTS: Counter[str] = Counter()


def record(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` (one of :data:`ROWS`)."""
    COUNTS[name] += amount


def table() -> list[str]:
    """The summary table as lines."""
    width = max(len(label) for _, label in ROWS)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{label.ljust(width)}  {COUNTS[name]}" for name, label in ROWS]
    return lines
