"""ActionService servicer: proto ↔ domain translation only, with one error funnel.

Every handler is decorated with :data:`rpc` (or :data:`stream`): its body is the work, and
every failure leaves as one rich status (services/common/funnel.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc

from services.actions import catalog, convert, errors, read_commands
from services.actions.auth import Authenticator
from services.actions.call import Call
from services.actions.db import DATABASE_ERRORS, unavailable_detail
from services.actions.events.watch import Watcher
from services.actions.executor import Executor
from services.actions.permissions import Permissions
from services.actions.reads import Reads
from services.actions.rollback import RollbackRunner
from services.actions.validation import (
    validate_check_access,
    validate_execute,
    validate_rollback,
)
from services.common import funnel, tracing

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]


def database_error(exc: Exception) -> errors.ServiceError | None:
    """DATABASE_UNAVAILABLE for a database failure (a watcher resumes from its last seq)."""
    if not isinstance(exc, DATABASE_ERRORS):
        return None
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return errors.database_unavailable(unavailable_detail(exc))


rpc = funnel.unary_rpc(database_error)
stream = funnel.stream_rpc(database_error)


class ActionServicer(actions_pb2_grpc.ActionServiceServicer):
    """Authenticates, validates, delegates, converts; every failure becomes one rich status."""

    def __init__(
        self,
        auth: Authenticator,
        executor: Executor,
        rollbacks: RollbackRunner,
        reads: Reads,
        watcher: Watcher,
        permissions: Permissions,
    ) -> None:
        self._auth = auth
        self._executor = executor
        self._rollbacks = rollbacks
        self._reads = reads
        self._watcher = watcher
        self._permissions = permissions

    def _call(self, context: Context, *, records: bool = False) -> Call:
        """The authenticated call; with the request's trace id when it ``records`` an action."""
        metadata = context.invocation_metadata()  # read once: grpc decodes it on every call
        principal = self._auth.authenticate(context, metadata)
        trace_id = tracing.request_trace_id(metadata) if records else None
        return Call.start(principal, context.time_remaining(), trace_id)

    @rpc
    async def Execute(
        self, request: actions_pb2.ExecuteRequest, context: Context
    ) -> actions_pb2.Action:
        """Run one action (or preview it with validate_only)."""
        call = self._call(context, records=True)
        command = validate_execute(request)
        return convert.action(await self._executor.execute(call, command))

    @rpc
    async def Rollback(
        self, request: actions_pb2.RollbackRequest, context: Context
    ) -> actions_pb2.Action:
        """Undo a completed action through a new ``rollback`` action."""
        call = self._call(context, records=True)
        command = validate_rollback(request)
        return convert.action(await self._rollbacks.rollback(call, command))

    @rpc
    async def GetAction(
        self, request: actions_pb2.GetActionRequest, context: Context
    ) -> actions_pb2.Action:
        """One audit row."""
        call = self._call(context)
        return convert.action(await self._reads.get_action(call, read_commands.action_ref(request)))

    @rpc
    async def ListActions(
        self, request: actions_pb2.ListActionsRequest, context: Context
    ) -> actions_pb2.ListActionsResponse:
        """A page of audit rows, newest first."""
        call = self._call(context)
        page = await self._reads.list_actions(call, read_commands.list_actions(request))
        return actions_pb2.ListActionsResponse(
            actions=[convert.action(r) for r in page.rows],
            next_page_token=page.next_page_token,
        )

    @rpc
    async def ListActionEvents(
        self, request: actions_pb2.ListActionEventsRequest, context: Context
    ) -> actions_pb2.ListActionEventsResponse:
        """One action's events in seq order, each as WatchActions sends it."""
        call = self._call(context)
        rows = await self._reads.list_action_events(call, read_commands.action_ref(request))
        return actions_pb2.ListActionEventsResponse(
            events=[convert.to_event(r["workspace_id"], r) for r in rows]
        )

    @rpc
    async def ListActionTypes(
        self, request: actions_pb2.ListActionTypesRequest, context: Context
    ) -> actions_pb2.ListActionTypesResponse:
        """The catalog, for any authenticated caller."""
        self._call(context)
        kinds = sorted(catalog.registry().values(), key=lambda k: k.name)
        return actions_pb2.ListActionTypesResponse(
            action_types=[convert.action_type(k) for k in kinds]
        )

    @rpc
    async def GetAgent(
        self, request: actions_pb2.GetAgentRequest, context: Context
    ) -> actions_pb2.Agent:
        """One agent's control state."""
        call = self._call(context)
        return convert.agent(await self._reads.get_agent(call, read_commands.agent_ref(request)))

    @rpc
    async def ListAgents(
        self, request: actions_pb2.ListAgentsRequest, context: Context
    ) -> actions_pb2.ListAgentsResponse:
        """A page of agents."""
        call = self._call(context)
        page = await self._reads.list_agents(call, read_commands.list_agents(request))
        return actions_pb2.ListAgentsResponse(
            agents=[convert.agent(r) for r in page.rows],
            next_page_token=page.next_page_token,
        )

    @rpc
    async def CheckAccess(
        self, request: actions_pb2.CheckAccessRequest, context: Context
    ) -> actions_pb2.CheckAccessResponse:
        """Which permissions the caller holds on each target; writes nothing."""
        call = self._call(context)
        command = validate_check_access(request)
        return convert.access(await self._permissions.check(call, command))

    @stream
    async def WatchActions(  # type: ignore[override]
        self, request: actions_pb2.WatchActionsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """The workspace's events after ``after_seq`` (with ``live_only``: none of the
        history), then live ones, until shutdown.

        Each event goes out as the bytes of its ActionEvent, serialized once per workspace
        by its feed (the registration passes bytes through unchanged).
        """
        call = self._call(context)
        events = await self._watcher.open(call, read_commands.watch(request))
        async for event in events:
            yield event
