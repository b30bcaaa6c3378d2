"""``fleetward can-i``: may I do an action on a target? (like ``kubectl auth can-i``)."""

from __future__ import annotations

from fleetward.client.cli import exit_codes
from fleetward.client.cli.context import Context, UsageError
from fleetward.client.cli.mutate import scope_of
from fleetward.client.cli.render import access_table, denial_text, dumps, to_json
from fleetward.client.cli.spinner import Spinner

PREFIX = "actions:"
DENIED = 1
"""``can-i`` exits 1 when the permission is denied (0 when allowed), like kubectl."""


def permission_name(value: str) -> str:
    """``actions:<name>`` from ``pause_agent``, ``rollback``, ``read`` or the full name."""
    return value if value.startswith(PREFIX) else PREFIX + value


def run_can_i(ctx: Context) -> int:
    """``fleetward can-i ACTION --agent ID | --department ID | --fleet`` (or ``--list``)."""
    args = ctx.args
    if bool(args.permission) == bool(args.list):
        raise UsageError("name one ACTION (e.g. pause_agent), or pass --list")
    scope, target_id = scope_of(args)
    with Spinner("checking…", stream=ctx.stderr):
        answer = ctx.actions().check_access(
            workspace_id=ctx.workspace(), targets=[(scope, target_id)]
        )
    access = answer.results[0]
    if args.list:
        ctx.out(dumps(to_json(answer)) if ctx.json else access_table(access))
        return exit_codes.OK
    permission = permission_name(args.permission)
    known = {*access.allowed, *(d.permission for d in access.denied)}
    if permission not in known:
        raise UsageError(f"unknown action {args.permission!r}; one of {', '.join(sorted(known))}")
    denial = next((d for d in access.denied if d.permission == permission), None)
    if ctx.json:
        ctx.out(
            dumps(
                {
                    "permission": permission,
                    "allowed": denial is None,
                    "denial": None if denial is None else to_json(denial),
                    "policy_version": answer.policy_version,
                }
            )
        )
    else:
        ctx.out("yes" if denial is None else f"no: {denial_text(denial)}")
    return exit_codes.OK if denial is None else DENIED
