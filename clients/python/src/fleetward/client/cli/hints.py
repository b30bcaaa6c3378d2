"""The next step after a common mistake, in the command line's words.

The service's errors name API fields (``reason``, ``skip_superseded``); the person at the
terminal typed flags. :func:`flag_for` maps a field to the flag that sets it, per
command, so that a field violation is shown under its flag, and :func:`hint` turns the
common mistakes into one last line that says what to do next:

========================================  ============================================
error                                     hint
========================================  ============================================
NOT_FOUND (agent, department, action,     where to find the right id, or
workspace)                                ``--workspace``
INVALID_ARGUMENT on flags' fields         the flags to correct (``--reason "..."``)
UNAUTHENTICATED                           a fresh token: ``FLEETWARD_TOKEN`` /
                                          ``make token SUB=…`` in dev
PERMISSION_DENIED                         the permission, ``fleetward can-i``, and
``INSUFFICIENT_PERMISSIONS``              ``--skip-denied`` when only some agents are
                                          denied
FAILED_PRECONDITION ``SUPERSEDED``        the later action, ``--skip-superseded``
========================================  ============================================

Every string taken from the error or the token is escaped with
:func:`~fleetward.client.cli.render.visible`, like the rest of the report.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from fleetward.client.cli.render import visible
from fleetward.client.errors import FleetwardError

WORKSPACE_FLAG = "--workspace (FLEETWARD_WORKSPACE)"

# The API fields each command sets from a flag, by the name the service gives them in a
# field violation. The target flags (--agent, --department, --fleet) are the ones given.
_EVERY_COMMAND: Mapping[str, str] = {"workspace_id": "--workspace"}
_TARGETED: Mapping[str, str] = {"reason": "--reason", "request_id": "--request-id"}
FIELD_FLAGS: Mapping[str, Mapping[str, str]] = {
    "execute": {
        **_TARGETED,
        "pause_agent.duration_minutes": "--minutes",
        "pause_agent.indefinite": "--indefinite",
        "set_budget.monthly_limit_cents": "--cents",
        "set_budget": "--cents or --clear",
    },
    "rollback": _TARGETED,
    "actions list": {
        "action_type": "--type",
        "status": "--status",
        "actor_subject": "--actor",
        "target_id": "--target",
        "page_size": "--limit",
    },
    "agents list": {"department_id": "--department", "status": "--status", "page_size": "--limit"},
    "watch": {"after_seq": "--after-seq"},
    "policy check": {"subject": "--subject", "action": "--action", "resource": "--resource"},
}
# Fields naming the target, set by whichever of --agent, --department, --fleet was given.
_TARGET_FIELDS: Mapping[str, frozenset[str]] = {
    "execute": frozenset({"target_id", "scope"}),
    "can-i": frozenset({"targets[0].target_id", "targets[0].scope"}),
}
# What a flag looks like in a hint, when it takes a value people tend to get wrong.
_SPELLED: Mapping[str, str] = {"--reason": '--reason "..."'}
# A subject that can go into a suggested shell command as it is.
_PLAIN_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}")
_LATER_SHOWN = 3


@dataclass(frozen=True)
class Invocation:
    """What a hint may name about the command that failed."""

    args: argparse.Namespace
    workspace: str
    """The workspace given (``--workspace`` / ``FLEETWARD_WORKSPACE``), or ""."""
    token: str
    """The bearer token sent, or ""."""
    token_variable: str
    """Where a fresh token goes: ``FLEETWARD_TOKEN``, or ``FLEETWARD_POLICY_TOKEN``."""

    @property
    def command(self) -> str:
        """The command as typed: ``execute``, ``rollback``, ``actions list``, ``can-i``, …."""
        words = [getattr(self.args, "command", None), getattr(self.args, "what", None)]
        return " ".join(str(w) for w in words if w)

    @property
    def target(self) -> str:
        """The target flags given (``--agent eng-code-1``), or ""."""
        if getattr(self.args, "agent", None):
            return f"--agent {visible(str(self.args.agent))}"
        if getattr(self.args, "department", None):
            return f"--department {visible(str(self.args.department))}"
        if getattr(self.args, "fleet", False):
            return "--fleet"
        return ""


def flag_for(field: str, invocation: Invocation) -> str | None:
    """The flag that sets the API ``field`` in this command, or None (not a flag's)."""
    command = invocation.command
    if field in _TARGET_FIELDS.get(command, ()) and invocation.target:
        return invocation.target.split()[0]
    return FIELD_FLAGS.get(command, {}).get(field) or _EVERY_COMMAND.get(field)


def hint(error: FleetwardError, invocation: Invocation) -> str | None:
    """The next step after ``error`` (one line, escaped), or None when there is none to
    suggest.
    """
    if error.code == grpc.StatusCode.NOT_FOUND:
        return _not_found(error, invocation)
    if error.code == grpc.StatusCode.INVALID_ARGUMENT:
        return _invalid(error, invocation)
    if error.code == grpc.StatusCode.UNAUTHENTICATED:
        return _unauthenticated(invocation)
    if error.code == grpc.StatusCode.PERMISSION_DENIED:
        return _denied(error, invocation)
    if error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "SUPERSEDED":
        return _superseded(error)
    return None


def _not_found(error: FleetwardError, invocation: Invocation) -> str | None:
    kind, ident = error.metadata.get("kind", ""), visible(error.metadata.get("id", ""))
    workspace = visible(invocation.workspace)
    listing = {
        "agent": "find its id with `fleetward agents list`",
        "department": "`fleetward agents list` shows each agent's department",
        "action": "find its id with `fleetward actions list`",
    }.get(kind)
    if listing is not None:
        return (
            f"workspace {workspace} has no {kind} '{ident}': {listing}, "
            f"or name another workspace with {WORKSPACE_FLAG}"
        )
    if kind == "workspace":
        return f"there is no workspace {ident}: check {WORKSPACE_FLAG}"
    return None


def _invalid(error: FleetwardError, invocation: Invocation) -> str | None:
    flags: list[str] = []
    for violation in error.field_violations:
        flag = flag_for(violation.field, invocation)
        if flag is not None and flag not in flags:
            flags.append(flag)
    if not flags:
        return None
    steps = []
    others = [_SPELLED.get(f, f) for f in flags if f != "--reason"]
    if others:
        steps.append(f"correct {' and '.join(others)}")
    if "--reason" in flags:
        steps.append('say why in 3 to 1000 characters, 3 of them visible: --reason "..."')
    return "; ".join(steps) + ", and run the command again"


def _claims(token: str) -> Mapping[str, object]:
    """The token's claims, read without verifying it (only to word the hint)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}
    return claims if isinstance(claims, dict) else {}


def _unauthenticated(invocation: Invocation) -> str:
    variable = invocation.token_variable
    service = variable == "FLEETWARD_POLICY_TOKEN"
    claims = _claims(invocation.token)
    subject = claims.get("sub")
    if not (isinstance(subject, str) and _PLAIN_SUBJECT.fullmatch(subject)):
        subject = "svc:<name>" if service else "<user>"
    fresh = (
        f"set {variable} or pass --token (in dev: export {variable}=$(make token SUB={subject}))"
    )
    if not invocation.token:
        return f"no token was sent: {fresh}"
    expiry = claims.get("exp")
    if isinstance(expiry, int | float) and not isinstance(expiry, bool) and expiry < time.time():
        when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(expiry))
        return f"the token expired at {when}: get a fresh one and {fresh}"
    return f"the service refused the token: get a fresh one and {fresh}"


def _denied(error: FleetwardError, invocation: Invocation) -> str | None:
    if error.reason != "INSUFFICIENT_PERMISSIONS":
        return None
    permission = visible(error.metadata.get("required_permission", "the permission"))
    if not error.metadata.get("user_role"):
        return (
            f"you hold no role in workspace {visible(invocation.workspace)} ({permission} is "
            f"needed): ask its administrators for one, or name another workspace with "
            f"{WORKSPACE_FLAG}"
        )
    if invocation.command == "can-i":  # asking is reading: can-i cannot say more
        return f"you lack {permission} on the workspace's fleet: ask its administrators for it"
    ask = f"fleetward can-i {permission.removeprefix('actions:')} {invocation.target or '--fleet'}"
    step = f"you lack {permission}: see why with `{ask}`"
    skippable = hasattr(invocation.args, "skip_denied") and not invocation.args.skip_denied
    if error.metadata.get("denied_count") and skippable:
        step += ", or act on the agents you may change with --skip-denied"
    return step


def _superseded(error: FleetwardError) -> str:
    later = [v.subject for v in error.precondition_violations if v.type == "SUPERSEDED"]
    if not later:
        later = error.metadata.get("superseded_by", "").split(",")
    later = [visible(a) for a in dict.fromkeys(later) if a]
    named = ", ".join(later[:_LATER_SHOWN]) + (" …" if len(later) > _LATER_SHOWN else "")
    see = f" (see `fleetward actions get {later[0]}`)" if later else ""
    return (
        f"{named or 'a later action'} changed some of its targets since{see}: to roll back "
        "the rest, run it again with --skip-superseded"
    )
