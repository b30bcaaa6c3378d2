"""Real things for every test: a PostgreSQL database migrated once per session, dev secrets.

``make test`` passes DATABASE_URL (embedded PostgreSQL when the user left it unset); a
plain ``pytest`` run without it starts the embedded server itself. Each session works in
its own freshly created database, dropped at the end; each test isolates its own
workspace (``new_workspace``). As in production, the database belongs to the owner role
that migrates it and the services connect as the least-privilege runtime role
(``database_dsn``); setup and tampering use the administrator (``admin_dsn``, ``pool``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from services.actions.migrate import migrate
from services.common.tokens import mint_service_token, mint_user_token
from services.dev import roles
from services.dev.scratch import scratch_database
from services.dev.secrets import database_password

TEST_PREFIX = "fleetward_test"


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """DSN of the PostgreSQL server the suite runs against."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from services.dev.database import embedded_postgres

    with embedded_postgres() as dsn:
        yield dsn


@dataclass(frozen=True)
class SessionDatabase:
    """The session's database as its administrator, its owner and the runtime role."""

    admin_dsn: str
    owner_dsn: str
    runtime_dsn: str


@pytest.fixture(scope="session")
async def role_password(server_dsn: str) -> str:
    """The dev roles exist (owner, runtime group, runtime login); their password."""
    password = database_password()
    await roles.ensure_roles(server_dsn, password)
    return password


@contextlib.asynccontextmanager
async def migrated_database(server: str, role_password: str) -> AsyncIterator[SessionDatabase]:
    """A fresh database migrated by its owner role, dropped at the end: its three DSNs."""
    async with scratch_database(server, TEST_PREFIX) as admin:
        split = roles.split(admin, role_password)
        await migrate(split.migrate_dsn)
        yield SessionDatabase(admin, split.migrate_dsn, split.runtime_dsn)


@pytest.fixture(scope="session")
async def session_database(server_dsn: str, role_password: str) -> AsyncIterator[SessionDatabase]:
    """A fresh database for this session, migrated by its owner role."""
    async with migrated_database(server_dsn, role_password) as database:
        yield database


@pytest.fixture(scope="session")
def database_dsn(session_database: SessionDatabase) -> str:
    """The session database as the services see it: the least-privilege runtime role."""
    return session_database.runtime_dsn


@pytest.fixture(scope="session")
def admin_dsn(session_database: SessionDatabase) -> str:
    """The session database as the server's administrator (setup, tampering)."""
    return session_database.admin_dsn


@pytest.fixture
async def empty_database(server_dsn: str, role_password: str) -> AsyncIterator[str]:
    """A fresh, empty database (no migrations, owned by the owner role) for this test only;
    its administrator DSN."""
    async with scratch_database(server_dsn, TEST_PREFIX) as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def pool(admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A small asyncpg pool on the session database as the administrator, for setup and
    SQL assertions."""
    p = await asyncpg.create_pool(admin_dsn, min_size=1, max_size=4)
    assert p is not None
    yield p
    await p.close()


@dataclass(frozen=True)
class Secrets:
    """Per-session signing secrets, as FLEETWARD_* variables would carry them."""

    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    service_jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def user_token(self, subject: str, **kwargs: object) -> str:
        """A valid user token for ``subject``."""
        return mint_user_token(self.jwt_secret, subject, **kwargs)  # type: ignore[arg-type]

    def service_token(self, name: str = "actions") -> str:
        """A valid service token for ``svc:<name>``."""
        return mint_service_token(self.service_jwt_secret, name)


@pytest.fixture(scope="session")
def dev_secrets() -> Secrets:
    """Signing secrets shared by the servers and tokens of this session."""
    return Secrets()


@dataclass(frozen=True)
class Workspace:
    """A test's own workspace: two departments and their agents."""

    id: uuid.UUID
    name: str
    agents: dict[str, str]  # agent_id -> department_id

    def agents_in(self, department: str) -> list[str]:
        """Agent ids of one department, sorted."""
        return sorted(a for a, d in self.agents.items() if d == department)


NewWorkspace = Callable[..., Awaitable[Workspace]]


@pytest.fixture
def new_workspace(pool: asyncpg.Pool) -> NewWorkspace:
    """Create an isolated workspace: ``await new_workspace(agents_per_department=3)``."""

    async def create(
        *, agents_per_department: int = 3, workspace_id: uuid.UUID | None = None
    ) -> Workspace:
        ws_id = workspace_id or uuid.uuid4()
        name = f"ws-{ws_id.hex[:12]}"
        agents = {
            f"{prefix}-{i}": dept
            for dept, prefix in (("engineering", "eng-code"), ("support", "sup-chat"))
            for i in range(1, agents_per_department + 1)
        }
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws_id, name)
            await conn.execute(
                "INSERT INTO departments (workspace_id, department_id, name) "
                "VALUES ($1, 'engineering', 'Engineering'), ($1, 'support', 'Support')",
                ws_id,
            )
            await conn.executemany(
                "INSERT INTO agents (workspace_id, agent_id, department_id) VALUES ($1, $2, $3)",
                [(ws_id, a, d) for a, d in agents.items()],
            )
        return Workspace(ws_id, name, agents)

    return create
