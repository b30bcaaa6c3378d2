# GENERATED from _async/actions.py by clients/python/scripts/unasync.py. Do not edit.
"""``ActionsClient``: the ActionService with typed keyword-only methods."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import grpc

from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from fleetward.client import _core
from fleetward.client._core import Retry
from fleetward.client._sync.transport import SyncClientBase
from fleetward.client.config import ClientConfig
from fleetward.client.params import ActionParams, ScopeLike


def _after(
    request: actions_pb2.WatchActionsRequest, event: actions_pb2.ActionEvent
) -> actions_pb2.WatchActionsRequest:
    """The request that resumes after ``event``: its seq, history included (live_only off),
    so a reconnect misses nothing that was appended meanwhile.
    """
    return actions_pb2.WatchActionsRequest(workspace_id=request.workspace_id, after_seq=event.seq)


class ActionsClient(SyncClientBase):
    """Blocking client of ``fleetward.actions.v1.ActionService``.

    Methods return the generated messages (``fleetward.actions.v1.actions_pb2``, typed by
    their ``.pyi`` stubs) and raise :class:`fleetward.client.errors.FleetwardError`
    subclasses. Use it as ``with ActionsClient(config) as client: ...``.

    Args:
        config: Target, token, TLS, default deadline and retry policy.
        channel: An existing channel to use instead of opening one (not closed by
            :meth:`close`).
    """

    def __init__(self, config: ClientConfig, *, channel: grpc.Channel | None = None) -> None:
        super().__init__(config, channel=channel)
        self._stubs: actions_pb2_grpc.ActionServiceStub | None = None

    @property
    def _stub(self) -> actions_pb2_grpc.ActionServiceStub:
        if self._stubs is None:
            self._stubs = actions_pb2_grpc.ActionServiceStub(self._transport.channel)
        return self._stubs

    def execute(
        self,
        *,
        workspace_id: str,
        scope: ScopeLike,
        target_id: str = "",
        reason: str,
        params: ActionParams,
        request_id: str | None = None,
        validate_only: bool = False,
        skip_denied: bool = False,
        deadline: float | None = None,
    ) -> actions_pb2.Action:
        """Run one action (or preview it with ``validate_only``).

        One ``request_id`` (a UUID unless given) is sent on every attempt, so retries
        after UNAVAILABLE or ``REQUEST_IN_PROGRESS`` can never act twice.

        Args:
            workspace_id: The workspace (UUID).
            scope: ``"agent"``, ``"department"``, ``"fleet"``, a ``Scope`` or the enum.
            target_id: The agent or department id; empty for fleet scope.
            reason: Why (3..1000 characters); kept in the audit log.
            params: ``PauseAgent``, ``ResumeAgent``, ``SetBudget`` or ``RestartAgent``.
            request_id: Idempotency key; pass your own to make retries across processes
                safe too.
            validate_only: Validate, check policy and preview ``result``; write nothing.
            skip_denied: At department or fleet scope, act on the agents the caller may
                change and list the others in ``result["skipped"]``, instead of raising
                :class:`~fleetward.client.errors.PermissionDenied` (metadata
                ``denied_count``, ``denied_agent_ids``) when any agent is denied.
            deadline: Seconds for the whole call, retries included (default from config).

        Returns:
            The recorded action (``validate_only``: the preview, not recorded).
        """
        request = _core.execute_request(
            workspace_id=workspace_id,
            scope=scope,
            target_id=target_id,
            reason=reason,
            params=params,
            request_id=request_id,
            validate_only=validate_only,
            skip_denied=skip_denied,
        )
        return self._transport.unary(
            self._stub.Execute, request, retry=Retry.MUTATION, deadline=deadline
        )

    def rollback(
        self,
        *,
        workspace_id: str,
        action_id: str,
        reason: str,
        request_id: str | None = None,
        validate_only: bool = False,
        skip_superseded: bool = False,
        skip_denied: bool = False,
        deadline: float | None = None,
    ) -> actions_pb2.Action:
        """Undo a completed action through a new audited ``rollback`` action.

        Needs ``actions:rollback`` on the original's target and, on every agent or budget
        it restores, the permission of that change (undoing a pause needs
        ``actions:resume_agent``, a resume ``actions:pause_agent``, a budget change
        ``actions:set_budget``).

        Args:
            workspace_id: The workspace (UUID).
            action_id: The action to undo.
            reason: Why (3..1000 characters).
            request_id: Idempotency key of the rollback (a UUID unless given; reused
                on every retry).
            validate_only: Validate and preview; write nothing.
            skip_superseded: Roll back the targets not changed since and list the
                skipped ones, instead of refusing with ``SUPERSEDED``.
            skip_denied: Roll back the targets the caller may change and list the others,
                instead of raising ``PermissionDenied``.
            deadline: Seconds for the whole call, retries included.

        Returns:
            The new rollback action.
        """
        request = _core.rollback_request(
            workspace_id=workspace_id,
            action_id=action_id,
            reason=reason,
            request_id=request_id,
            validate_only=validate_only,
            skip_superseded=skip_superseded,
            skip_denied=skip_denied,
        )
        return self._transport.unary(
            self._stub.Rollback, request, retry=Retry.MUTATION, deadline=deadline
        )

    def check_access(
        self,
        *,
        workspace_id: str,
        targets: Sequence[tuple[ScopeLike, str]],
        deadline: float | None = None,
    ) -> actions_pb2.CheckAccessResponse:
        """Which permissions the caller holds on each target ("can I?"); writes nothing.

        Decided by Execute's rule: the target's own path and, for an action type that
        changes agents, every non-retired agent in the target.

        Args:
            workspace_id: The workspace (UUID).
            targets: ``(scope, target_id)`` pairs, 1..500: ``("agent", "eng-code-1")``,
                ``("department", "engineering")``, ``("fleet", "")``.
            deadline: Seconds for the whole call, retries included.

        Returns:
            One ``TargetAccess`` per target, in order: ``allowed`` permissions and
            ``denied`` ones with their reason and code.
        """
        request = _core.check_access_request(workspace_id=workspace_id, targets=targets)
        return self._transport.unary(
            self._stub.CheckAccess, request, retry=Retry.READ, deadline=deadline
        )

    def get_action(
        self, *, workspace_id: str, action_id: str, deadline: float | None = None
    ) -> actions_pb2.Action:
        """Return one action (audit row)."""
        request = actions_pb2.GetActionRequest(workspace_id=workspace_id, action_id=action_id)
        return self._transport.unary(
            self._stub.GetAction, request, retry=Retry.READ, deadline=deadline
        )

    def list_actions(
        self,
        *,
        workspace_id: str,
        action_type: str = "",
        status: actions_pb2.ActionStatus.ValueType | str | None = None,
        actor_subject: str = "",
        target_id: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = _core.PAGE_SIZE,
        deadline: float | None = None,
    ) -> Iterator[actions_pb2.Action]:
        """Iterate over a workspace's actions, newest first, following page tokens.

        Args:
            workspace_id: The workspace (UUID).
            action_type: Only this type (e.g. ``pause_agent``).
            status: Only this status (enum or name such as ``"completed"``).
            actor_subject: Only actions of this subject.
            target_id: Only actions on this target.
            created_after: Only actions created at or after this time.
            created_before: Only actions created before this time.
            page_size: Actions per page (at most 500).
            deadline: Seconds per page, retries included.
        """
        token = ""
        while True:
            page = self.list_actions_page(
                workspace_id=workspace_id,
                action_type=action_type,
                status=status,
                actor_subject=actor_subject,
                target_id=target_id,
                created_after=created_after,
                created_before=created_before,
                page_size=page_size,
                page_token=token,
                deadline=deadline,
            )
            yield from page.actions
            if not page.next_page_token:
                return
            token = page.next_page_token

    def list_actions_page(
        self,
        *,
        workspace_id: str,
        action_type: str = "",
        status: actions_pb2.ActionStatus.ValueType | str | None = None,
        actor_subject: str = "",
        target_id: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = _core.PAGE_SIZE,
        page_token: str = "",
        deadline: float | None = None,
    ) -> actions_pb2.ListActionsResponse:
        """Return one page of a workspace's actions, newest first (for paged views).

        Args:
            workspace_id: The workspace (UUID).
            action_type: Only this type (e.g. ``pause_agent``).
            status: Only this status (enum or name such as ``"completed"``).
            actor_subject: Only actions of this subject.
            target_id: Only actions on this target.
            created_after: Only actions created at or after this time.
            created_before: Only actions created before this time.
            page_size: Actions per page (at most 500).
            page_token: The ``next_page_token`` of the previous page, passed with the same
                workspace and filters (anything else raises ``InvalidArgument``); empty for
                the first page.
            deadline: Seconds for the whole call, retries included.

        Returns:
            The page: ``actions`` and ``next_page_token`` (empty on the last page).
        """
        request = _core.list_actions_request(
            workspace_id=workspace_id,
            action_type=action_type,
            status=status,
            actor_subject=actor_subject,
            target_id=target_id,
            created_after=created_after,
            created_before=created_before,
            page_size=page_size,
            page_token=page_token,
        )
        return self._transport.unary(
            self._stub.ListActions, request, retry=Retry.READ, deadline=deadline
        )

    def list_action_events(
        self, *, workspace_id: str, action_id: str, deadline: float | None = None
    ) -> list[actions_pb2.ActionEvent]:
        """Return one action's events in ``seq`` order, each as ``watch_actions`` yields it.

        Needs ``actions:read`` on the workspace, like ``get_action``; an unknown action
        raises ``NotFound``.

        Args:
            workspace_id: The workspace (UUID).
            action_id: The action (UUID).
            deadline: Seconds for the whole call, retries included.

        Returns:
            Its events (``action.pending``, ``action.in_progress``, ``action.completed``,
            ``action.failed``, ``action.rolled_back``, ``action.denied``: whichever exist),
            each with ``seq``, the action as it was then, ``created_at`` and ``hash``.
        """
        request = actions_pb2.ListActionEventsRequest(
            workspace_id=workspace_id, action_id=action_id
        )
        response = self._transport.unary(
            self._stub.ListActionEvents, request, retry=Retry.READ, deadline=deadline
        )
        return list(response.events)

    def list_action_types(self, *, deadline: float | None = None) -> list[actions_pb2.ActionType]:
        """Return the action catalog (any authenticated caller)."""
        response = self._transport.unary(
            self._stub.ListActionTypes,
            actions_pb2.ListActionTypesRequest(),
            retry=Retry.READ,
            deadline=deadline,
        )
        return list(response.action_types)

    def get_agent(
        self, *, workspace_id: str, agent_id: str, deadline: float | None = None
    ) -> actions_pb2.Agent:
        """Return one agent's control state."""
        request = actions_pb2.GetAgentRequest(workspace_id=workspace_id, agent_id=agent_id)
        return self._transport.unary(
            self._stub.GetAgent, request, retry=Retry.READ, deadline=deadline
        )

    def list_agents(
        self,
        *,
        workspace_id: str,
        department_id: str = "",
        status: actions_pb2.AgentStatus.ValueType | str | None = None,
        page_size: int = _core.PAGE_SIZE,
        deadline: float | None = None,
    ) -> Iterator[actions_pb2.Agent]:
        """Iterate over a workspace's agents by id, following page tokens.

        Args:
            workspace_id: The workspace (UUID).
            department_id: Only this department.
            status: Only this status (enum or name such as ``"paused"``).
            page_size: Agents per page (at most 500).
            deadline: Seconds per page, retries included.
        """
        request = actions_pb2.ListAgentsRequest(
            workspace_id=workspace_id,
            department_id=department_id,
            status=_core.agent_status(status),
            page_size=page_size,
        )
        while True:
            page = self._transport.unary(
                self._stub.ListAgents, request, retry=Retry.READ, deadline=deadline
            )
            yield from page.agents
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def watch_actions(
        self,
        *,
        workspace_id: str,
        after_seq: int = 0,
        live_only: bool = False,
        max_reconnects: int | None = None,
    ) -> Iterator[actions_pb2.ActionEvent]:
        """Iterate over the workspace's events with ``seq > after_seq``, then live ones.

        When the stream breaks (UNAVAILABLE, or a clean end because the server shut
        down) the client reconnects with backoff and resumes after the last ``seq`` it
        yielded, so no event is skipped or repeated. There is no deadline.

        Args:
            workspace_id: The workspace (UUID).
            after_seq: Resume point: the last ``seq`` already processed (0 = all).
            live_only: Skip the history: only events appended after the stream attaches
                (``after_seq`` must then be 0, else ``InvalidArgument``). Once an event
                was yielded a reconnect resumes after it, history included, so nothing is
                missed; a reconnect before the first event asks for live events again.
            max_reconnects: Give up (raise ``Unavailable``) after this many reconnects
                in a row without an event; ``None`` reconnects forever.
        """
        request = actions_pb2.WatchActionsRequest(
            workspace_id=workspace_id, after_seq=after_seq, live_only=live_only
        )
        yield from self._transport.watch(
            self._stub.WatchActions, request, resume=_after, max_reconnects=max_reconnects
        )
