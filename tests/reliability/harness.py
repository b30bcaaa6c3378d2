"""Fixtures and helpers shared by tests/reliability and tests/security (via their conftests).

The servers run in this process on port 0 with the session's signing secrets; their logs
go through the services' own JSON formatter into :data:`LOG_LINES`, which the security
suite scans for secrets and tokens.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from services.common.logs import JsonFormatter
from tests.actions.helpers import Api
from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.invariants import Violation, check_invariants
from tests.servers import running_action_server, running_policy_server, write_test_policy

# frank is an admin in HOME_A only: the tenancy tests' caller from another workspace.
HOME_A = uuid.UUID("a0a00000-0000-4000-8000-0000000000a1")
TENANT_LINES = (f"g, frank, admin, {HOME_A}",)

LOG_LINES: list[str] = []
LOG_FILES: list[Path] = []  # logs of service processes the suites start
SECRETS: set[str] = set()
LEAKED: list[str] = []
# A JWT (header.payload[.signature]) in any form, redacted or signed or not.
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")


def leaks() -> list[str]:
    """Log lines (in-process and of service processes) that hold a secret or a token."""
    texts = [("in-process", line) for line in LOG_LINES]
    for path in LOG_FILES:
        if path.exists():
            texts += [(path.name, line) for line in path.read_text(errors="replace").splitlines()]
    found = []
    for where, line in texts:
        if JWT_RE.search(line) or any(secret in line for secret in SECRETS):
            found.append(f"{where}: {line[:300]}")
    return found


class _Capture(logging.Handler):
    """Keeps every formatted record of the test process."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter("test"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            LOG_LINES.append(self.format(record))
        except Exception:  # pragma: no cover - a broken record must not break the suite
            self.handleError(record)


@pytest.fixture(scope="session", autouse=True)
def captured_logs(dev_secrets: Secrets) -> Iterator[list[str]]:
    """Every log line of the in-process servers during the suite, at DEBUG."""
    SECRETS.update({dev_secrets.jwt_secret, dev_secrets.service_jwt_secret})
    handler = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in ("grpc", "asyncio", "hypothesis", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    yield LOG_LINES
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture(scope="session")
def rel_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test policy plus frank (admin of HOME_A only)."""
    return write_test_policy(tmp_path_factory.mktemp("rel-policies"), TENANT_LINES)


@pytest.fixture(scope="session")
async def rel_policy_target(rel_policy_dir: Path, dev_secrets: Secrets) -> AsyncIterator[str]:
    """The real policy service."""
    async with running_policy_server(rel_policy_dir, dev_secrets) as target:
        yield target


@pytest.fixture(scope="session")
async def rel_action_target(
    database_dsn: str, rel_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[str]:
    """The real action service on the session database."""
    async with running_action_server(
        database_dsn, rel_policy_target, dev_secrets, policy_timeout_ms=2000
    ) as target:
        yield target


@pytest.fixture(scope="session")
async def rel_channel(rel_action_target: str) -> AsyncIterator[grpc.aio.Channel]:
    """One client channel to the action service."""
    async with grpc.aio.insecure_channel(rel_action_target) as ch:
        yield ch


@pytest.fixture(scope="session")
def rel_api(rel_channel: grpc.aio.Channel, dev_secrets: Secrets) -> Api:
    """The generated stub with per-subject tokens."""
    return Api(rel_channel, dev_secrets)


@pytest.fixture(scope="session")
async def home_a(pool: asyncpg.Pool) -> uuid.UUID:
    """HOME_A with one department and agent (frank's only workspace)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO workspaces (id, name) VALUES ($1, 'frank-home') ON CONFLICT DO NOTHING",
            HOME_A,
        )
        await conn.execute(
            "INSERT INTO departments (workspace_id, department_id, name) "
            "VALUES ($1, 'support', 'Support') ON CONFLICT DO NOTHING",
            HOME_A,
        )
        await conn.execute(
            "INSERT INTO agents (workspace_id, agent_id, department_id) "
            "VALUES ($1, 'sup-chat-1', 'support') ON CONFLICT DO NOTHING",
            HOME_A,
        )
    return HOME_A


async def assert_invariants(
    pool: asyncpg.Pool, workspaces: Iterable[uuid.UUID] | None = None
) -> None:
    """Run the checker, count it, and fail with every violation it reports."""
    async with pool.acquire() as conn:
        found: list[Violation] = await check_invariants(conn, workspaces)
    counters.record("checks")
    counters.record("violations", len(found))
    assert not found, "\n".join(f"{v.kind} {v.workspace_id}: {v.detail}" for v in found)


async def create_workspace(pool: asyncpg.Pool, agents_per_department: int = 3) -> uuid.UUID:
    """A workspace with departments engineering and support on any database."""
    ws = uuid.uuid4()
    agents = [
        (ws, f"{prefix}-{i}", dept)
        for dept, prefix in (("engineering", "eng-code"), ("support", "sup-chat"))
        for i in range(1, agents_per_department + 1)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"rel-{ws}")
        await conn.execute(
            "INSERT INTO departments (workspace_id, department_id, name) "
            "VALUES ($1, 'engineering', 'Engineering'), ($1, 'support', 'Support')",
            ws,
        )
        await conn.executemany(
            "INSERT INTO agents (workspace_id, agent_id, department_id) VALUES ($1, $2, $3)",
            agents,
        )
    return ws


# Subjects whose rows anywhere count as writes (hostile callers never get any).
WRITERS = ["mallory", "bob", "frank"]
WRITES = """
SELECT
  (SELECT count(*) FROM action_audit_log
    WHERE actor_user_id = ANY($2::text[]) OR workspace_id = ANY($1::uuid[])) AS actions,
  (SELECT count(*) FROM action_events WHERE workspace_id = ANY($1::uuid[])) AS events,
  (SELECT count(*) FROM budgets WHERE workspace_id = ANY($1::uuid[])) AS budgets,
  (SELECT string_agg(agent_id || status || generation || updated_at::text, ',' ORDER BY agent_id)
     FROM agents WHERE workspace_id = ANY($1::uuid[])) AS agents,
  (SELECT count(*) FROM workspaces) AS workspaces"""


async def writes(pool: asyncpg.Pool, workspaces: list[uuid.UUID]) -> Mapping[str, Any]:
    """What a write by a refused call (or a fuzzing subject anywhere) would change."""
    row = await pool.fetchrow(WRITES, workspaces, WRITERS)
    assert row is not None
    return dict(row)


UNFINISHED = """
SELECT count(*) FROM action_audit_log
WHERE workspace_id = ANY($1::uuid[]) AND status IN ('pending', 'in_progress')"""


async def wait_until_finished(
    pool: asyncpg.Pool, spaces: list[uuid.UUID], timeout_s: float = 20.0
) -> None:
    """Until no action of ``spaces`` is pending or in progress (a recovery pass fails the
    rows of dead executors), or ``timeout_s``; the invariants checked next say which."""
    for _ in range(int(timeout_s / 0.2)):
        if not await pool.fetchval(UNFINISHED, spaces):
            return
        await asyncio.sleep(0.2)
