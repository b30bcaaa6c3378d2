"""Exactly once under retries (issue 8): one action and one effect per request_id."""

from __future__ import annotations

import collections

import asyncpg
import pytest

from tests.conftest import Secrets
from tests.reliability.harness import assert_invariants, create_workspace
from tests.reliability.load import Load, compare_with_database

AGENTS_PER_DEPARTMENT = 16


async def exactly_once(
    n: int, workspaces: int, target: str, secrets: Secrets, pool: asyncpg.Pool
) -> None:
    spaces = [await create_workspace(pool, AGENTS_PER_DEPARTMENT) for _ in range(workspaces)]
    agents = [
        f"{prefix}-{i}"
        for prefix in ("eng-code", "sup-chat")
        for i in range(1, AGENTS_PER_DEPARTMENT + 1)
    ]
    load = Load([target], secrets, spaces, agents, retry_share=0.2)
    outcomes = await load.run(n, concurrency=64)
    assert len(outcomes) == n
    problems = await compare_with_database(pool, outcomes)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
    finals = collections.Counter(o.final for o in outcomes)
    assert finals["OK"] > n // 2, finals
    codes = collections.Counter(c for o in outcomes for c in o.codes)
    print(f"finals {dict(finals)}; attempts {dict(codes)}")
    # No fault is injected here: nothing may fail inside an action.
    internal = [(o.request_id, o.reasons) for o in outcomes if "INTERNAL" in o.codes]
    assert not internal, internal[:10]
    retried = sum(len(o.codes) > 1 for o in outcomes)
    assert retried >= n // 10, f"only {retried} request ids were retried"
    await assert_invariants(pool, spaces)


async def test_a_thousand_executes_with_retries_take_effect_exactly_once(
    rel_action_target: str, dev_secrets: Secrets, pool: asyncpg.Pool
) -> None:
    await exactly_once(1000, 4, rel_action_target, dev_secrets, pool)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_ten_thousand_executes_with_retries_take_effect_exactly_once(
    rel_action_target: str, dev_secrets: Secrets, pool: asyncpg.Pool
) -> None:
    await exactly_once(10_000, 8, rel_action_target, dev_secrets, pool)
