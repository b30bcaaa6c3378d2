"""Who is calling and how much time is left (the caller's deadline, docs/architecture.md §5.9)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.actions import errors
from services.common.tokens import Principal

DEFAULT_LOCK_TIMEOUT_MS = 5000
MIN_LOCK_TIMEOUT_MS = 500


@dataclass(frozen=True)
class Call:
    """An authenticated RPC: the principal, its absolute monotonic deadline (or None) and
    the trace it belongs to (or None: untraced, or not asked for).
    """

    principal: Principal
    deadline: float | None = None
    trace_id: str | None = None

    @classmethod
    def start(
        cls, principal: Principal, time_remaining: float | None, trace_id: str | None = None
    ) -> Call:
        """From ``context.time_remaining()``; refuses a call whose deadline already passed."""
        if time_remaining is not None and time_remaining <= 0:
            raise errors.deadline_exceeded()
        deadline = None if time_remaining is None else time.monotonic() + time_remaining
        return cls(principal, deadline, trace_id)

    @property
    def subject(self) -> str:
        """The policy subject (the token's ``sub``)."""
        return self.principal.subject

    def remaining(self) -> float | None:
        """Seconds left, or None without a deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def ensure_time_left(self) -> None:
        """DEADLINE_EXCEEDED when nothing is left; nothing has been started yet."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise errors.deadline_exceeded()

    def lock_timeout_ms(self) -> int:
        """``lock_timeout`` for the effect: the remaining deadline, within sane bounds.

        Work after the pending commit is shielded, so a nearly spent deadline still gets
        a short, bounded wait rather than an instant failure.
        """
        left = self.remaining()
        if left is None:
            return DEFAULT_LOCK_TIMEOUT_MS
        # 80 %: a lock wait that fails still leaves time to record and report the failure.
        return max(MIN_LOCK_TIMEOUT_MS, min(DEFAULT_LOCK_TIMEOUT_MS, int(left * 800)))
