"""The test catalog: an action kind that exists only for the tests.

Every kind of the service's catalog changes rows in PostgreSQL only, so every one is
recorded in one transaction. :class:`ExternalRestart` is ``restart_agent`` with an external
effect as well (it also tells an agent runtime, here a file), so the two-step form of an
action's recorded life (docs/architecture.md §5.2, §5.7) stays proven: in process with
:func:`installed`, in a service process started as :mod:`tests.catalog.actions_service`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from services.actions import catalog
from services.actions.catalog import Change
from services.actions.catalog.restart_agent import RestartAgent
from services.actions.db import Conn

# Where ExternalRestart's runtime writes in a service process (unset: it writes nothing).
RUNTIME_LOG_ENV = "TEST_CATALOG_RUNTIME_LOG"


class ExternalRestart(RestartAgent):
    """``restart_agent`` that also asks the agent runtime to restart the agent: one line
    ``<action id> <agent id> <generation>`` per agent in ``runtime_log``.
    """

    external_effect = True
    description = "Ask one agent to restart, telling its runtime too (test catalog)"

    def __init__(self, runtime_log: Path | None) -> None:
        """Tell the runtime by appending to ``runtime_log`` (None: tell nobody)."""
        self.runtime_log = runtime_log

    async def apply(
        self,
        conn: Conn,
        workspace_id: uuid.UUID,
        changes: Sequence[Change],
        action_id: uuid.UUID,
    ) -> None:
        """The rows, then the call outside PostgreSQL."""
        await super().apply(conn, workspace_id, changes, action_id)
        if self.runtime_log is not None:
            with self.runtime_log.open("a", encoding="utf-8") as runtime:
                for c in changes:
                    runtime.write(f"{action_id} {c.key} {c.after['generation']}\n")

    def told(self) -> list[str]:
        """The lines the runtime was sent."""
        if self.runtime_log is None or not self.runtime_log.exists():
            return []
        return self.runtime_log.read_text(encoding="utf-8").splitlines()


def install(kind: ExternalRestart) -> None:
    """Put ``kind`` in the catalog in place of ``restart_agent``."""
    catalog.registry()[kind.name] = kind


@contextlib.contextmanager
def installed(runtime_log: Path) -> Iterator[ExternalRestart]:
    """:class:`ExternalRestart` in the catalog of this process, until the block ends."""
    registry = catalog.registry()
    previous = registry[RestartAgent.name]
    kind = ExternalRestart(runtime_log)
    install(kind)
    try:
        yield kind
    finally:
        registry[RestartAgent.name] = previous


def from_env() -> ExternalRestart:
    """The kind a service process of the test catalog runs (its runtime log from the env)."""
    path = os.environ.get(RUNTIME_LOG_ENV)
    return ExternalRestart(Path(path) if path else None)
