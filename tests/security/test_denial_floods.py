"""A caller repeating denied requests cannot grow the audit log without bound, nor queue a
workspace's real actions behind the chain head: beyond a per-subject limit, denials are
RESOURCE_EXHAUSTED ``RATE_LIMITED`` (with RetryInfo) and not recorded."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from fleetward.client import (
    AsyncActionsClient,
    ClientConfig,
    PauseAgent,
    PermissionDenied,
    ResourceExhausted,
    RetryPolicy,
)

from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.harness import create_workspace
from tests.servers import running_action_server

LIMIT = 5


async def _pause(target: str, secrets: Secrets, subject: str, ws: uuid.UUID, agent: str) -> None:
    config = ClientConfig(
        target=target, token=secrets.user_token(subject), retry=RetryPolicy(max_attempts=1)
    )
    async with AsyncActionsClient(config) as client:
        await client.execute(
            workspace_id=str(ws),
            scope="agent",
            target_id=agent,
            reason=f"attempt {uuid.uuid4().hex[:8]}",  # every repeat differs
            params=PauseAgent(),
        )


async def _denied_rows(pool: asyncpg.Pool, ws: uuid.UUID, subject: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM action_audit_log "
        "WHERE workspace_id = $1 AND actor_user_id = $2 AND status = 'denied'",
        ws,
        subject,
    )
    return count


async def test_denials_beyond_the_limit_are_rate_limited_and_not_recorded(
    database_dsn: str, rel_policy_target: str, dev_secrets: Secrets, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    async with running_action_server(
        database_dsn, rel_policy_target, dev_secrets, denials_per_minute=LIMIT
    ) as target:
        for _ in range(LIMIT):
            with pytest.raises(PermissionDenied):
                await _pause(target, dev_secrets, "carol", ws, "eng-code-1")
        for _ in range(20):
            with pytest.raises(ResourceExhausted) as err:
                await _pause(target, dev_secrets, "carol", ws, "eng-code-1")
            counters.record("requests")
        assert err.value.reason == "RATE_LIMITED"
        assert err.value.retry_delay is not None
        assert 1 <= err.value.retry_delay <= 60
        assert await _denied_rows(pool, ws, "carol") == LIMIT
        # Another subject's real action is not held up, and its own denials still count
        # on their own.
        await _pause(target, dev_secrets, "bob", ws, "eng-code-2")
        with pytest.raises(PermissionDenied):
            await _pause(target, dev_secrets, "dana", ws, "eng-code-3")
        assert await _denied_rows(pool, ws, "dana") == 1


async def test_concurrent_denials_cannot_race_past_the_limit(
    database_dsn: str, rel_policy_target: str, dev_secrets: Secrets, pool: asyncpg.Pool
) -> None:
    """Counting and recording are one step per subject: 100 denials sent at once record
    exactly the limit (the count and the insert used to be separate; 200 at once recorded
    30 against a limit of 5)."""
    ws = await create_workspace(pool)
    async with running_action_server(
        database_dsn,
        rel_policy_target,
        dev_secrets,
        denials_per_minute=LIMIT,
        policy_timeout_ms=5000,
    ) as target:

        async def attempt() -> str:
            try:
                await _pause(target, dev_secrets, "carol", ws, "eng-code-1")
            except (PermissionDenied, ResourceExhausted) as exc:
                return exc.reason
            return "allowed"

        reasons = await asyncio.gather(*(attempt() for _ in range(100)))
    assert reasons.count("INSUFFICIENT_PERMISSIONS") == LIMIT
    assert reasons.count("RATE_LIMITED") == 100 - LIMIT
    assert await _denied_rows(pool, ws, "carol") == LIMIT
