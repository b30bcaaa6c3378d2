"""Concurrent rollbacks of one action: exactly one wins, the rest are refused cleanly.

Regression (issue 8): the rollback effect locked the original row ``FOR UPDATE``, which
conflicts with the ``KEY SHARE`` lock the foreign-key check of another rollback's
pending row (``rollback_of_action_id``) takes; with the chain head locked in the same
statement as that insert, two rollbacks deadlocked and one caller got INTERNAL.
"""

from __future__ import annotations

import asyncio
import collections

import asyncpg
import grpc

from tests.actions.helpers import Api, details
from tests.reliability import counters
from tests.reliability.harness import assert_invariants, create_workspace


async def test_racing_rollbacks_never_deadlock_and_exactly_one_wins(
    rel_api: Api, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool, 4)
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(12):
        done = await rel_api.execute(
            "alice", ws, "pause_agent", scope="department", target="support"
        )

        async def roll(action_id: str = done.action_id) -> str:
            try:
                await rel_api.rollback("alice", ws, action_id)
            except grpc.aio.AioRpcError as exc:
                return f"{exc.code().name} {details(exc).reason}"
            return "OK"

        results = await asyncio.gather(*(roll() for _ in range(4)))
        counters.record("requests", len(results) + 1)
        assert results.count("OK") == 1, results
        outcomes.update(results)
    assert set(outcomes) <= {"OK", "FAILED_PRECONDITION ALREADY_ROLLED_BACK"}, outcomes
    await assert_invariants(pool, [ws])
