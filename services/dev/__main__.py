"""Developer commands behind the Makefile: gen-proto, with-db, token, run."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path


def _with_db(command: list[str]) -> int:
    from services.dev.run import database_url

    env = dict(os.environ)
    with database_url(env):
        proc = subprocess.Popen(command, env=env)
        previous = signal.signal(signal.SIGINT, lambda *_: proc.send_signal(signal.SIGINT))
        try:
            return proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    """Parse and run one developer command."""
    parser = argparse.ArgumentParser(prog="python -m services.dev")
    sub = parser.add_subparsers(dest="cmd", required=True)
    gen = sub.add_parser("gen-proto", help="generate Python code from protos/")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--check", action="store_true", help="fail if regeneration changes files")
    wdb = sub.add_parser("with-db", help="run COMMAND with DATABASE_URL (embedded when unset)")
    wdb.add_argument("command", nargs=argparse.REMAINDER)
    tok = sub.add_parser("token", help="print a dev token (svc:NAME for a service token)")
    tok.add_argument("subject")
    sub.add_parser("run", help="the whole local setup (make run)")
    sub.add_parser("stop", help="stop the running make run (make stop)")
    sub.add_parser("reset", help="stop make run and delete the embedded demo database (make reset)")
    args = parser.parse_args(argv)

    if args.cmd == "gen-proto":
        from services.dev.protogen import main as gen_main

        return gen_main(args.out, check=args.check)
    if args.cmd == "with-db":
        command = (
            [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
        )
        if not command:
            parser.error("with-db needs a command")
        return _with_db(command)
    if args.cmd == "token":
        if not args.subject:
            parser.error("usage: make token SUB=bob   (or SUB=svc:NAME)")
        from services.dev.token import token_for

        print(token_for(args.subject))
        return 0
    if args.cmd in ("stop", "reset"):
        from services.dev import lifecycle

        return lifecycle.stop() if args.cmd == "stop" else lifecycle.reset(os.environ)
    from services.dev.run import main as run_main

    return run_main()


if __name__ == "__main__":
    sys.exit(main())
