# GENERATED from _async/policy.py by clients/python/scripts/unasync.py. Do not edit.
"""``PolicyClient``: the PolicyService (callers need a service token or mTLS)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from fleetward.client._core import Retry
from fleetward.client._sync.transport import SyncClientBase
from fleetward.client.config import ClientConfig
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc


class PolicyClient(SyncClientBase):
    """Blocking client of ``fleetward.policy.v1.PolicyService``.

    Methods return the generated messages (``fleetward.policy.v1.policy_pb2``). Every
    method is a read and retries UNAVAILABLE (e.g. while the first policy loads).

    Args:
        config: Target (the policy service), service token, TLS, deadline, retries.
        channel: An existing channel to use instead of opening one.
    """

    def __init__(self, config: ClientConfig, *, channel: grpc.Channel | None = None) -> None:
        super().__init__(config, channel=channel)
        self._stubs: policy_pb2_grpc.PolicyServiceStub | None = None

    @property
    def _stub(self) -> policy_pb2_grpc.PolicyServiceStub:
        if self._stubs is None:
            self._stubs = policy_pb2_grpc.PolicyServiceStub(self._transport.channel)
        return self._stubs

    def check(
        self,
        *,
        subject: str,
        workspace_id: str,
        action: str,
        resource: str,
        explain: bool = False,
        deadline: float | None = None,
    ) -> policy_pb2.CheckResponse:
        """Decide whether ``subject`` may do ``action`` on ``resource``.

        Args:
            subject: The policy subject (a user token's ``sub``, e.g. ``bob``).
            workspace_id: The workspace (UUID).
            action: ``actions:<type>``, ``actions:rollback`` or ``actions:read``.
            resource: ``fleet``, ``fleet/departments/<id>`` or
                ``fleet/departments/<id>/agents/<id>``.
            explain: Also return the deciding policy line.
            deadline: Seconds for the whole call, retries included.
        """
        request = policy_pb2.CheckRequest(
            subject=subject,
            workspace_id=workspace_id,
            action=action,
            resource=resource,
            explain=explain,
        )
        return self._transport.unary(self._stub.Check, request, retry=Retry.READ, deadline=deadline)

    def batch_check(
        self, *, checks: Sequence[policy_pb2.CheckRequest], deadline: float | None = None
    ) -> policy_pb2.BatchCheckResponse:
        """Decide several requests against one policy version (results in order)."""
        request = policy_pb2.BatchCheckRequest(checks=list(checks))
        return self._transport.unary(
            self._stub.BatchCheck, request, retry=Retry.READ, deadline=deadline
        )

    def check_resources(
        self,
        *,
        subject: str,
        workspace_id: str,
        action: str,
        resources: Sequence[str],
        deadline: float | None = None,
    ) -> policy_pb2.CheckResourcesResponse:
        """Decide one subject and permission on each resource (1..20,000), in one policy
        version; only the denials are listed.

        Requests above the channel's message limit (1 MiB by default: about 7,000 of the
        longest paths) need a larger ``grpc.max_send_message_length`` in the config's
        options.
        """
        request = policy_pb2.CheckResourcesRequest(
            subject=subject, workspace_id=workspace_id, action=action, resources=list(resources)
        )
        return self._transport.unary(
            self._stub.CheckResources, request, retry=Retry.READ, deadline=deadline
        )

    def get_policy_info(self, *, deadline: float | None = None) -> policy_pb2.GetPolicyInfoResponse:
        """Report the policy being served and the last reload."""
        return self._transport.unary(
            self._stub.GetPolicyInfo,
            policy_pb2.GetPolicyInfoRequest(),
            retry=Retry.READ,
            deadline=deadline,
        )
