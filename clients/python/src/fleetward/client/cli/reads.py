"""The read commands: actions, agents, watch and policy."""

from __future__ import annotations

import itertools
import os
import signal
import threading

from fleetward.client.cli import exit_codes, pipes
from fleetward.client.cli.context import Context
from fleetward.client.cli.render import (
    action_block,
    actions_table,
    agents_table,
    decision_block,
    dumps,
    event_line,
    policy_info_block,
    to_json,
    types_table,
)
from fleetward.client.cli.spinner import Spinner


def run_action_types(ctx: Context) -> int:
    """``fleetward actions types``."""
    with Spinner("loading…", stream=ctx.stderr):
        types = ctx.actions().list_action_types()
    ctx.out(dumps([to_json(t) for t in types]) if ctx.json else types_table(types))
    return exit_codes.OK


def run_actions_list(ctx: Context) -> int:
    """``fleetward actions list [--type --status --actor --target --limit]``."""
    args = ctx.args
    with Spinner("loading…", stream=ctx.stderr):
        listed = ctx.actions().list_actions(
            workspace_id=ctx.workspace(),
            action_type=args.type or "",
            status=args.status,
            actor_subject=args.actor or "",
            target_id=args.target_id or "",
            page_size=min(args.limit, 500),
        )
        actions = list(itertools.islice(listed, args.limit))
    ctx.out(dumps([to_json(a) for a in actions]) if ctx.json else actions_table(actions))
    return exit_codes.OK


def run_action_get(ctx: Context) -> int:
    """``fleetward actions get ID``."""
    with Spinner("loading…", stream=ctx.stderr):
        action = ctx.actions().get_action(workspace_id=ctx.workspace(), action_id=ctx.args.id)
    ctx.out(dumps(to_json(action)) if ctx.json else action_block(action))
    return exit_codes.OK


def run_agents_list(ctx: Context) -> int:
    """``fleetward agents list [--department --status --limit]``."""
    args = ctx.args
    with Spinner("loading…", stream=ctx.stderr):
        listed = ctx.actions().list_agents(
            workspace_id=ctx.workspace(),
            department_id=args.department or "",
            status=args.status,
            page_size=min(args.limit, 500),
        )
        agents = list(itertools.islice(listed, args.limit))
    ctx.out(dumps([to_json(a) for a in agents]) if ctx.json else agents_table(agents))
    return exit_codes.OK


def run_agent_get(ctx: Context) -> int:
    """``fleetward agents get ID``."""
    with Spinner("loading…", stream=ctx.stderr):
        agent = ctx.actions().get_agent(workspace_id=ctx.workspace(), agent_id=ctx.args.id)
    ctx.out(dumps(to_json(agent)) if ctx.json else agents_table([agent]))
    return exit_codes.OK


def run_watch(ctx: Context) -> int:
    """``fleetward watch [--after-seq N]``: events as lines (NDJSON with ``--json``).

    The stream is read on a daemon thread while the main thread waits for it or for
    Ctrl-C (SIGINT) / SIGTERM, so a signal is never held up inside gRPC's blocking stream
    read. On a signal the output is flushed and the process exits at once with 0 (Ctrl-C
    is how a watch ends), leaving the kernel to close the connection rather than waiting
    on the stream's teardown. A reader that closes the output (``| head -1``) ends the
    watch too, even between events: :class:`BrokenPipeError`, which
    :func:`fleetward.client.cli.main` turns into a quiet exit 141.
    """
    events = ctx.actions().watch_actions(workspace_id=ctx.workspace(), after_seq=ctx.args.after_seq)
    finished, interrupted = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def on_signal(_signum: int, _frame: object) -> None:
        interrupted.set()
        finished.set()

    with Spinner("watching for events…", stream=ctx.stderr) as spinner:

        def consume() -> None:
            seen = 0
            try:
                for event in events:
                    seen += 1
                    spinner.print(
                        dumps(to_json(event), compact=True) if ctx.json else event_line(event)
                    )
                    spinner.update(f"watching… {seen} event(s), last seq {event.seq}")
            except BaseException as exc:  # re-raised below: the exit code follows its class
                failure.append(exc)
            finally:
                finished.set()

        in_main = threading.current_thread() is threading.main_thread()
        handlers = (
            {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main
            else {}
        )
        try:
            threading.Thread(target=consume, name="fleetward-watch", daemon=True).start()
            while not finished.wait(0.2):
                if pipes.reader_gone(ctx.stdout):
                    raise BrokenPipeError("the reader of the output went away")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    if interrupted.is_set():
        ctx.stdout.flush()
        ctx.stderr.flush()
        os._exit(exit_codes.OK)
    if failure:
        raise failure[0]
    return exit_codes.OK


def run_policy_check(ctx: Context) -> int:
    """``fleetward policy check --subject --action --resource``."""
    args = ctx.args
    with Spinner("checking…", stream=ctx.stderr):
        decision = ctx.policy().check(
            subject=args.subject,
            workspace_id=ctx.workspace(),
            action=args.action,
            resource=args.resource,
            explain=True,
        )
    ctx.out(dumps(to_json(decision)) if ctx.json else decision_block(decision))
    return exit_codes.OK


def run_policy_info(ctx: Context) -> int:
    """``fleetward policy info``."""
    with Spinner("loading…", stream=ctx.stderr):
        info = ctx.policy().get_policy_info()
    ctx.out(dumps(to_json(info)) if ctx.json else policy_info_block(info))
    return exit_codes.OK
