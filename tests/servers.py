"""Real servers for tests, on port 0: the policy service and the action service.

Reusable by every suite (actions, client library): each is an async context manager that
starts the real server in this event loop and yields the ``host:port`` target.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from services.actions.server import ActionServer
from services.actions.server import build_server as build_action_server
from services.actions.settings import ActionSettings
from services.common.tracing import OFF, Tracing
from services.policy.server import PolicyServer
from services.policy.server import build_server as build_policy_server
from services.policy.settings import PolicySettings

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
LOCALHOST = "127.0.0.1:0"

# A platform-wide test policy: the demo roles, and the demo users bound in EVERY workspace,
# so each test's own workspace works without reloading the policy. Subjects with a role in
# one workspace only (erin) or none at all (mallory) are for tenancy tests.
TEST_BINDINGS = (
    "g, alice, admin, *",
    "g, bob, operator, *",
    "g, carol, viewer, *",
    "g, dana, budget_admin, *",
)
ROLE_LINES = (
    "p, viewer, *, fleet, actions:read, allow",
    "p, viewer, *, fleet/**, actions:read, allow",
    "p, operator, *, fleet/departments/**, actions:pause_agent, allow",
    "p, operator, *, fleet/departments/**, actions:resume_agent, allow",
    "p, operator, *, fleet, actions:rollback, allow",
    "p, operator, *, fleet/**, actions:rollback, allow",
    "p, budget_admin, *, fleet, actions:set_budget, allow",
    "p, budget_admin, *, fleet/**, actions:set_budget, allow",
    "p, admin, *, fleet, actions:*, allow",
    "p, admin, *, fleet/**, actions:*, allow",
    "g, operator, viewer, *",
    "g, budget_admin, viewer, *",
)


class SigningSecrets(Protocol):
    """The two secrets a test session signs tokens with (``tests.conftest.Secrets``)."""

    @property
    def jwt_secret(self) -> str: ...

    @property
    def service_jwt_secret(self) -> str: ...


def write_test_policy(directory: Path, extra_lines: Iterable[str] = ()) -> Path:
    """A policy directory: the repository's model.conf, the test roles and bindings."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(POLICIES / "model.conf", directory / "model.conf")
    lines = [*ROLE_LINES, *TEST_BINDINGS, *extra_lines]
    (directory / "policy.csv").write_text("\n".join(lines) + "\n")
    return directory


@contextlib.asynccontextmanager
async def running_policy_server(
    policy_dir: Path,
    secrets: SigningSecrets,
    *,
    expect_loaded: bool = True,
    traced: Tracing = OFF,
) -> AsyncIterator[str]:
    """The real policy service on a free port, serving ``policy_dir``; yields its target.

    ``traced``: the (installed) tracing it runs with; off by default.
    """
    async with running_policy_server_handle(
        policy_dir, secrets, expect_loaded=expect_loaded, traced=traced
    ) as built:
        yield f"127.0.0.1:{built.port}"


@contextlib.asynccontextmanager
async def running_policy_server_handle(
    policy_dir: Path,
    secrets: SigningSecrets,
    *,
    expect_loaded: bool = True,
    traced: Tracing = OFF,
) -> AsyncIterator[PolicyServer]:
    """Like :func:`running_policy_server`, yielding the :class:`PolicyServer` itself (its
    ``reloader`` reloads the policy on demand)."""
    settings = PolicySettings(
        listen_addr=LOCALHOST,
        policy_dir=policy_dir,
        service_jwt_secret=secrets.service_jwt_secret,
        decision_log="off",
        watch=False,
        allowed_callers=frozenset({"*"}),  # tests ask as svc:actions, svc:client-tests, ...
    )
    built = await build_policy_server(settings, traced)
    loaded = await built.start()
    try:
        if expect_loaded and not loaded:
            raise RuntimeError(f"the policy in {policy_dir} did not load")
        yield built
    finally:
        await built.stop(grace=0.5)


@contextlib.asynccontextmanager
async def running_action_server(
    database_dsn: str,
    policy_target: str,
    secrets: SigningSecrets,
    *,
    traced: Tracing = OFF,
    **overrides: Any,
) -> AsyncIterator[str]:
    """The real action service on a free port; yields its target.

    ``overrides`` replace :class:`ActionSettings` fields (e.g. ``policy_timeout_ms``);
    ``traced`` is the (installed) tracing it runs with, off by default.
    """
    async with running_action_server_handle(
        database_dsn, policy_target, secrets, traced=traced, **overrides
    ) as built:
        yield f"127.0.0.1:{built.port}"


@contextlib.asynccontextmanager
async def running_action_server_handle(
    database_dsn: str,
    policy_target: str,
    secrets: SigningSecrets,
    *,
    traced: Tracing = OFF,
    **overrides: Any,
) -> AsyncIterator[ActionServer]:
    """Like :func:`running_action_server`, yielding the :class:`ActionServer` itself."""
    settings = ActionSettings(
        database_url=database_dsn,
        listen_addr=LOCALHOST,
        policy_target=policy_target,
        jwt_secret=secrets.jwt_secret,
        service_jwt_secret=secrets.service_jwt_secret,
        # Half the production pools: a suite keeps several servers alive at once, and the
        # runtime role (no superuser) may not use PostgreSQL's reserved connections.
        pool_size=10,
        watch_pool_size=2,
    )
    settings = replace(settings, **overrides)
    built = await build_action_server(settings, traced)
    await built.start()
    try:
        yield built
    finally:
        await built.stop(grace=0.5)
