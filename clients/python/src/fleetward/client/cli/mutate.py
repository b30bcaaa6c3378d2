"""``fleetward execute`` and ``fleetward rollback``: preview, confirm, then act."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from fleetward.actions.v1 import actions_pb2
from fleetward.client.cli import exit_codes
from fleetward.client.cli.context import Context, UsageError
from fleetward.client.cli.render import action_block, changes_table, dumps, target_of, to_json
from fleetward.client.cli.spinner import Spinner
from fleetward.client.params import (
    ActionParams,
    PauseAgent,
    RestartAgent,
    ResumeAgent,
    Scope,
    SetBudget,
)
from fleetward.client.results import action_result


def params_of(args: argparse.Namespace) -> ActionParams:
    """The action parameters named by ``execute <type>`` and its flags."""
    action: str = args.action
    if action == "pause_agent":
        return PauseAgent(duration_minutes=args.minutes, indefinite=args.indefinite)
    if action == "resume_agent":
        return ResumeAgent()
    if action == "set_budget":
        return SetBudget(monthly_limit_cents=args.cents, clear=args.clear)
    return RestartAgent()


def scope_of(args: argparse.Namespace) -> tuple[Scope, str]:
    """The scope and target id from ``--agent``, ``--department`` or ``--fleet``."""
    if getattr(args, "agent", None):
        return Scope.AGENT, str(args.agent)
    if getattr(args, "department", None):
        return Scope.DEPARTMENT, str(args.department)
    if getattr(args, "fleet", False):
        return Scope.FLEET, ""
    raise UsageError("name a target: --agent ID, --department ID or --fleet")


def confirm(ctx: Context, question: str) -> bool:
    """Ask ``question`` on the terminal; ``--yes`` answers for the user.

    Raises:
        UsageError: When no terminal can answer and ``--yes`` was not given.
    """
    if ctx.args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "refusing to act without confirmation: stdin is not a terminal. "
            "Re-run with --yes to confirm (or --dry-run to only preview)."
        )
    ctx.stderr.write(f"{question} [y/N] ")
    ctx.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _preview(ctx: Context, preview: actions_pb2.Action, headline: str) -> None:
    result = action_result(preview)
    lines = [headline]
    if result.count:
        lines += [f"{result.count} change(s) planned:", changes_table(preview)]
    else:
        lines.append("Nothing would change (the action would still be recorded).")
    text = "\n".join(lines)
    # With --json, stdout carries only the final document; the preview is for the person.
    if ctx.json:
        ctx.note(text)
    else:
        ctx.out(text)


def _preview_then_act(
    ctx: Context,
    headline: str,
    question: str,
    call: Callable[[bool], actions_pb2.Action],
) -> int:
    with Spinner("validating…", stream=ctx.stderr):
        preview = call(True)
    if ctx.args.dry_run:
        if ctx.json:
            ctx.out(dumps(to_json(preview)))
        else:
            _preview(ctx, preview, headline)
        return exit_codes.OK
    _preview(ctx, preview, headline)
    if not confirm(ctx, question):
        ctx.note("Cancelled; nothing was executed.")
        return exit_codes.DECLINED
    with Spinner("executing…", stream=ctx.stderr):
        action = call(False)
    ctx.out(dumps(to_json(action)) if ctx.json else action_block(action))
    return exit_codes.OK


def run_execute(ctx: Context) -> int:
    """``fleetward execute <type> ...``."""
    args = ctx.args
    scope, target_id = scope_of(args)
    params = params_of(args)
    workspace = ctx.workspace()
    client = ctx.actions()

    def call(validate_only: bool) -> actions_pb2.Action:
        return client.execute(
            workspace_id=workspace,
            scope=scope,
            target_id=target_id,
            reason=args.reason,
            params=params,
            request_id=None if validate_only else args.request_id,
            validate_only=validate_only,
            skip_denied=getattr(args, "skip_denied", False),
        )

    where = target_of(scope.proto, target_id)
    return _preview_then_act(
        ctx, f"{args.action} on {where}: {args.reason}", f"Execute {args.action} on {where}?", call
    )


def run_rollback(ctx: Context) -> int:
    """``fleetward rollback ID --reason ...``."""
    args = ctx.args
    workspace = ctx.workspace()
    client = ctx.actions()

    def call(validate_only: bool) -> actions_pb2.Action:
        return client.rollback(
            workspace_id=workspace,
            action_id=args.action_id,
            reason=args.reason,
            request_id=None if validate_only else args.request_id,
            validate_only=validate_only,
            skip_superseded=args.skip_superseded,
            skip_denied=args.skip_denied,
        )

    return _preview_then_act(
        ctx,
        f"rollback of {args.action_id}: {args.reason}",
        f"Roll back {args.action_id}?",
        call,
    )
