"""The ``fleetward`` command line (argparse; stdlib only)."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from fleetward.client.cli import access, exit_codes, mutate, reads

ENVIRONMENT = """environment:
  FLEETWARD_TARGET         action service host:port (default 127.0.0.1:50051)
  FLEETWARD_POLICY_TARGET  policy service host:port (default 127.0.0.1:50052)
  FLEETWARD_TOKEN          bearer token (FLEETWARD_POLICY_TOKEN for `policy`, if set)
  FLEETWARD_WORKSPACE      workspace id
  FLEETWARD_TLS_CA         CA bundle (PEM); enables TLS
"""
STATUSES = ["pending", "in_progress", "completed", "failed", "rolled_back", "denied"]
AGENT_STATUSES = ["active", "paused", "retired"]
# A string: argparse's class is generic only to type checkers.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the subcommand (the later one wins)."""
    default = argparse.SUPPRESS if suppress else None
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--server", default=default, metavar="HOST:PORT", help="action service (FLEETWARD_TARGET)"
    )
    group.add_argument(
        "--policy-server",
        default=default,
        metavar="HOST:PORT",
        help="policy service (FLEETWARD_POLICY_TARGET)",
    )
    group.add_argument("--token", default=default, help="bearer token (prefer FLEETWARD_TOKEN)")
    group.add_argument("-w", "--workspace", default=default, help="workspace id")
    group.add_argument("--tls-ca", default=default, help="CA bundle (PEM); enables TLS")
    group.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS if suppress else 10.0,
        help="seconds per call, retries included (default 10)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print JSON for scripts instead of tables",
    )
    return common


def _confirm_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why (3..1000 characters, audited)")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="only show the preview")
    parser.add_argument("--request-id", help="idempotency key (default: a fresh UUID)")


def _target_flags(parser: argparse.ArgumentParser, *, agent_only: bool = False) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--agent", metavar="ID", help="one agent")
    if not agent_only:
        target.add_argument("--department", metavar="ID", help="every agent of a department")
        target.add_argument("--fleet", action="store_true", help="every agent of the workspace")


def _skip_denied_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-denied",
        action="store_true",
        help="act on what you may change and list the rest, instead of refusing the whole "
        "action when some agent is denied",
    )


def _can_i(sub: Subparsers, leaf: list[argparse.ArgumentParser]) -> None:
    can_i = sub.add_parser(
        "can-i",
        parents=leaf,
        help="may I do ACTION on a target? (exit 0 yes, 1 no)",
        description="Ask the action service whether you may do ACTION on the target, by the "
        "rule Execute applies (the target and every agent in it). Prints yes or no and why; "
        "exits 0 when allowed, 1 when denied. --list shows every permission.",
    )
    can_i.add_argument(
        "permission",
        nargs="?",
        metavar="ACTION",
        help="an action type (pause_agent, ...), rollback or read; actions:… also accepted",
    )
    can_i.add_argument("--list", action="store_true", help="every permission on the target")
    _target_flags(can_i)
    can_i.set_defaults(run=access.run_can_i)


def _execute(sub: Subparsers, leaf: list[argparse.ArgumentParser]) -> None:
    execute = sub.add_parser("execute", help="run an action (preview, confirm, act)")
    kinds = execute.add_subparsers(dest="action", required=True, metavar="ACTION")

    pause = kinds.add_parser("pause_agent", parents=leaf, help="pause agents")
    _target_flags(pause)
    length = pause.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=int, help="pause length, 1..10080 (default 30)")
    length.add_argument("--indefinite", action="store_true", help="pause with no expiry")

    resume = kinds.add_parser("resume_agent", parents=leaf, help="resume paused agents")
    _target_flags(resume)

    budget = kinds.add_parser("set_budget", parents=leaf, help="set or clear a monthly budget")
    _target_flags(budget)
    amount = budget.add_mutually_exclusive_group(required=True)
    amount.add_argument("--cents", type=int, help="monthly limit in cents")
    amount.add_argument("--clear", action="store_true", help="remove the target's own budget")

    restart = kinds.add_parser("restart_agent", parents=leaf, help="restart one agent")
    _target_flags(restart, agent_only=True)

    for kind in (pause, resume, budget):
        _skip_denied_flag(kind)
    for kind in (pause, resume, budget, restart):
        _confirm_flags(kind)
        kind.set_defaults(run=mutate.run_execute)


def _actions(sub: Subparsers, leaf: list[argparse.ArgumentParser]) -> None:
    actions = sub.add_parser("actions", help="list, show and describe actions")
    actions_sub = actions.add_subparsers(dest="what", required=True, metavar="SUBCOMMAND")
    types = actions_sub.add_parser("types", parents=leaf, help="the action catalog")
    types.set_defaults(run=reads.run_action_types)
    listing = actions_sub.add_parser("list", parents=leaf, help="actions, newest first")
    listing.add_argument("--type", help="only this action type")
    listing.add_argument("--status", choices=STATUSES, help="only this status")
    listing.add_argument("--actor", help="only actions of this subject")
    listing.add_argument("--target", dest="target_id", metavar="ID", help="only on this target")
    listing.add_argument("--limit", type=int, default=20, help="at most N actions (default 20)")
    listing.set_defaults(run=reads.run_actions_list)
    get = actions_sub.add_parser("get", parents=leaf, help="one action")
    get.add_argument("id", help="action id")
    get.set_defaults(run=reads.run_action_get)


def _rollback(sub: Subparsers, leaf: list[argparse.ArgumentParser]) -> None:
    rollback = sub.add_parser("rollback", parents=leaf, help="undo a completed action")
    rollback.add_argument("action_id", metavar="ID", help="the action to undo")
    rollback.add_argument(
        "--skip-superseded", action="store_true", help="skip agents changed later"
    )
    _skip_denied_flag(rollback)
    _confirm_flags(rollback)
    rollback.set_defaults(run=mutate.run_rollback)


def _agents(sub: Subparsers, leaf: list[argparse.ArgumentParser]) -> None:
    agents = sub.add_parser("agents", help="agents and their control state")
    agents_sub = agents.add_subparsers(dest="what", required=True, metavar="SUBCOMMAND")
    agents_list = agents_sub.add_parser("list", parents=leaf, help="agents by id")
    agents_list.add_argument("--department", help="only this department")
    agents_list.add_argument("--status", choices=AGENT_STATUSES, help="only this status")
    agents_list.add_argument("--limit", type=int, default=100, help="at most N (default 100)")
    agents_list.set_defaults(run=reads.run_agents_list)
    agent_get = agents_sub.add_parser("get", parents=leaf, help="one agent")
    agent_get.add_argument("id", help="agent id")
    agent_get.set_defaults(run=reads.run_agent_get)


def _watch(sub: Subparsers, leaf: list[argparse.ArgumentParser]) -> None:
    watch = sub.add_parser("watch", parents=leaf, help="follow the workspace's action events")
    watch.add_argument("--after-seq", type=int, default=0, help="resume after this seq")
    watch.set_defaults(run=reads.run_watch)


def _policy(sub: Subparsers, leaf: list[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="ask the policy service")
    policy_sub = policy.add_subparsers(dest="what", required=True, metavar="SUBCOMMAND")
    check = policy_sub.add_parser("check", parents=leaf, help="decide one request")
    check.add_argument("--subject", required=True, help="e.g. bob")
    check.add_argument("--action", required=True, help="e.g. actions:pause_agent")
    check.add_argument("--resource", required=True, help="e.g. fleet/departments/support")
    check.set_defaults(run=reads.run_policy_check)
    info = policy_sub.add_parser("info", parents=leaf, help="the served policy")
    info.set_defaults(run=reads.run_policy_info)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; each leaf sets ``run``."""
    leaf = [_common(suppress=True)]
    parser = argparse.ArgumentParser(
        prog="fleetward",
        description="Act on a Fleetward agent fleet and read its audit trail.",
        parents=[_common(suppress=False)],
        epilog=ENVIRONMENT + "\n" + exit_codes.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order here is the order ``fleetward --help`` lists the commands in.
    _actions(sub, leaf)
    _execute(sub, leaf)
    _rollback(sub, leaf)
    _can_i(sub, leaf)
    _agents(sub, leaf)
    _watch(sub, leaf)
    _policy(sub, leaf)
    return parser
