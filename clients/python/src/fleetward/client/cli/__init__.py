"""``fleetward``: the command line for people (tables) and scripts (``--json``, exit codes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from fleetward.client.cli import exit_codes, pipes
from fleetward.client.cli.context import Context, UsageError
from fleetward.client.cli.parser import build_parser
from fleetward.client.errors import FleetwardError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``fleetward`` command; return its exit code (see ``fleetward --help``).

    The one entry point (the ``fleetward`` script and ``python -m fleetward.client.cli``):
    a reader that closes the output early (``fleetward watch --json | head -1``) ends any
    command quietly with exit code 141, without a traceback (:mod:`.pipes`).
    """
    try:
        code = _run(argv)
        # A closed pipe shows here, not in the interpreter's own flush at exit.
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pipes.detach()
        return exit_codes.BROKEN_PIPE
    return code


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args, os.environ)
    run: Callable[[Context], int] = args.run
    try:
        return run(ctx)
    except FleetwardError as error:
        ctx.report(error)
        return exit_codes.for_error(error)
    except UsageError as error:
        ctx.note(f"fleetward: {error}")
        return error.code
    except KeyboardInterrupt:
        ctx.note("interrupted")
        return exit_codes.INTERRUPTED
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
