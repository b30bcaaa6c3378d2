"""``python -m services.policy``: serve | validate | test | explain."""

from __future__ import annotations

import argparse
import asyncio
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse and run one command."""
    parser = argparse.ArgumentParser(prog="python -m services.policy")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="run the PolicyService")
    from services.policy import cli

    cli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.cmd != "serve":
        return cli.run(args)
    from services.policy.server import serve
    from services.policy.settings import PolicySettings

    asyncio.run(serve(PolicySettings.from_env()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
