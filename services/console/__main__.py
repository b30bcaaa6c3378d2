"""``python -m services.console serve``: the operator console over HTTP."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from services.common.settings import SettingsError
from services.console.app import server_config
from services.console.settings import ConsoleSettings


def main(argv: list[str] | None = None) -> int:
    """Parse and run one command."""
    parser = argparse.ArgumentParser(prog="python -m services.console")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="serve the operator console (FLEETWARD_CONSOLE_ADDR)")
    parser.parse_args(argv)
    try:
        settings = ConsoleSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    uvicorn.Server(server_config(settings)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
