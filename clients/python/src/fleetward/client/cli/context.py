"""What a command needs: configuration from flags and ``FLEETWARD_*``, clients, output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from fleetward.client._sync.actions import ActionsClient
from fleetward.client._sync.policy import PolicyClient
from fleetward.client.cli import exit_codes, hints, pipes
from fleetward.client.cli.render import dumps, visible
from fleetward.client.config import (
    DEFAULT_POLICY_TARGET,
    DEFAULT_TARGET,
    ClientConfig,
    TlsConfig,
)
from fleetward.client.errors import FleetwardError


class UsageError(Exception):
    """A command line that cannot run; exits with code 2 (or ``code``)."""

    def __init__(self, message: str, code: int = exit_codes.USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    """Flags and environment of one invocation, and the clients it opened."""

    args: argparse.Namespace
    env: Mapping[str, str]
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    _actions: ActionsClient | None = None
    _policy: PolicyClient | None = None

    @property
    def json(self) -> bool:
        """Whether output is JSON for scripts."""
        return bool(self.args.json)

    def _setting(self, flag: str, *variables: str, default: str = "") -> str:
        value: str | None = getattr(self.args, flag, None)
        if value:
            return value
        for variable in variables:
            if self.env.get(variable):
                return self.env[variable]
        return default

    def _config(self, target: str, token: str) -> ClientConfig:
        ca = self._setting("tls_ca", "FLEETWARD_TLS_CA")
        try:
            tls = TlsConfig.from_files(ca=ca) if ca else None
        except OSError as exc:
            raise UsageError(f"cannot read the TLS CA file: {exc}") from None
        return ClientConfig(
            target=target,
            token=token or None,
            tls=tls,
            default_deadline=float(self.args.timeout),
        )

    def workspace(self) -> str:
        """The workspace id from ``--workspace`` or ``FLEETWARD_WORKSPACE``."""
        workspace = self._setting("workspace", "FLEETWARD_WORKSPACE")
        if not workspace:
            raise UsageError("no workspace: pass --workspace ID or set FLEETWARD_WORKSPACE")
        return workspace

    @property
    def for_policy(self) -> bool:
        """Whether this command calls the policy service (``fleetward policy …``)."""
        return getattr(self.args, "command", None) == "policy"

    def token(self) -> str:
        """The bearer token this command sends: ``--token``, else ``FLEETWARD_TOKEN``
        (for ``policy``: ``FLEETWARD_POLICY_TOKEN`` first).
        """
        if self.for_policy:
            return self._setting("token", "FLEETWARD_POLICY_TOKEN", "FLEETWARD_TOKEN")
        return self._setting("token", "FLEETWARD_TOKEN")

    def actions(self) -> ActionsClient:
        """The action service client (``--server`` / ``FLEETWARD_TARGET``)."""
        if self._actions is None:
            target = self._setting("server", "FLEETWARD_TARGET", default=DEFAULT_TARGET)
            self._actions = ActionsClient(self._config(target, self.token()))
        return self._actions

    def policy(self) -> PolicyClient:
        """The policy service client (``--policy-server`` / ``FLEETWARD_POLICY_TARGET``).

        The policy service answers service callers only: the token comes from
        ``--token``, ``FLEETWARD_POLICY_TOKEN`` or ``FLEETWARD_TOKEN``.
        """
        if self._policy is None:
            target = self._setting(
                "policy_server", "FLEETWARD_POLICY_TARGET", default=DEFAULT_POLICY_TARGET
            )
            self._policy = PolicyClient(self._config(target, self.token()))
        return self._policy

    def close(self) -> None:
        """Close the clients this invocation opened."""
        for client in (self._actions, self._policy):
            if client is not None:
                client.close()

    def out(self, text: str) -> None:
        """Write a result to stdout (control characters shown as escapes)."""
        pipes.write(self.stdout, visible(text, keep_newlines=True) + "\n")

    def note(self, text: str) -> None:
        """Write a message for the person at the terminal to stderr (escaped, like out)."""
        pipes.write(self.stderr, visible(text, keep_newlines=True) + "\n")

    def invocation(self) -> hints.Invocation:
        """What a hint may name about this command (:mod:`.hints`)."""
        return hints.Invocation(
            args=self.args,
            workspace=self._setting("workspace", "FLEETWARD_WORKSPACE"),
            token=self.token(),
            token_variable="FLEETWARD_POLICY_TOKEN" if self.for_policy else "FLEETWARD_TOKEN",
        )

    def report(self, error: FleetwardError) -> None:
        """Describe ``error`` on stderr (as JSON with ``--json``).

        For people: the server's message, its details (a field violation under the flag
        that sets the field, when there is one) and, last, the next step for a common
        mistake (``hint: …``).
        """
        if self.json:
            self.note(dumps({"error": error.to_json()}))
            return
        invocation = self.invocation()
        # Each server-supplied string on a line of its own making: its newlines escaped too.
        self.note(f"error: {visible(str(error))}")
        for violation in error.field_violations:
            field = hints.flag_for(violation.field, invocation) or visible(violation.field)
            self.note(f"  {field}: {visible(violation.description)}")
        for pre in error.precondition_violations:
            self.note(f"  {visible(pre.type)} {visible(pre.subject)}: {visible(pre.description)}")
        for key, value in sorted(error.metadata.items()):
            self.note(f"  {visible(key)} = {visible(value)}")
        if error.retry_delay is not None:
            self.note(f"  retry in {error.retry_delay:g} s")
        next_step = hints.hint(error, invocation)
        if next_step is not None:
            self.note(f"hint: {next_step}")
