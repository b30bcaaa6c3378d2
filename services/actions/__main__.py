"""``python -m services.actions``: serve | migrate | seed-demo | create-workspace |
import-agents | audit verify.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.settings import SettingsError

if TYPE_CHECKING:
    from services.actions.settings import ActionSettings

    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

INVENTORY_FORMAT = """\
file format (a header row, then one agent per row):
  workspace_id,department_id,agent_id[,department_name]
  ac3e0000-0000-4000-8000-000000000001,engineering,eng-code-1,Engineering
with --workspace ID the workspace_id column is left out:
  department_id,agent_id[,department_name]
ids: 1-64 characters of a-z 0-9 . _ - (starting with a letter or digit)
unknown departments and agents are created (agents active); existing agents keep their
control state and only follow a department change; --prune retires the workspace's
agents the file omits (nothing is ever deleted). Any problem is reported as
file:line: message and nothing changes.
"""


def main(argv: list[str] | None = None) -> int:
    """Parse and run one command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    without_settings = _WITHOUT_SETTINGS.get(args.cmd)
    if without_settings is not None:
        return without_settings(args)

    from services.actions.settings import ActionSettings

    try:
        settings = ActionSettings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return _WITH_SETTINGS[args.cmd](args, settings)


def _parser() -> argparse.ArgumentParser:
    """The command line: one subcommand each, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(prog="python -m services.actions")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="run the ActionService")
    sub.add_parser("migrate", help="apply pending migrations (safe to run concurrently)")
    sub.add_parser("seed-demo", help="create the demo workspace acme")
    new = sub.add_parser("create-workspace", help="create an empty workspace; print its id")
    new.add_argument("name", help="a unique name, 1 to 200 printable characters")
    new.add_argument("--id", metavar="UUID", help="the workspace id (default: a new UUID)")
    _add_import_agents(sub)
    _add_audit(sub)
    return parser


def _add_import_agents(sub: _Subparsers) -> None:
    """``import-agents FILE.csv [--workspace ID] [--prune]``."""
    imp = sub.add_parser(
        "import-agents",
        help="upsert agents from an inventory CSV file",
        description="Upsert the agent inventory from a CSV file, in one transaction.",
        epilog=INVENTORY_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.add_argument("--workspace", metavar="ID", help="the workspace of a file without one")
    imp.add_argument("--prune", action="store_true", help="retire agents the file omits")


def _add_audit(sub: _Subparsers) -> None:
    """``audit verify [--workspace ID] [--checkpoints DIR [--public-key FILE]...]``."""
    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_cmd", required=True)
    verify = audit_sub.add_parser(
        "verify",
        help="recompute every hash chain, cross-check rows and targets (and checkpoints); "
        "exit 1 naming what is broken",
    )
    verify.add_argument("--workspace", metavar="ID", help="verify this workspace only")
    verify.add_argument(
        "--checkpoints",
        metavar="DIR",
        type=Path,
        help="also prove every signed checkpoint in DIR is on the chain",
    )
    verify.add_argument(
        "--public-key",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="PEM public key to verify checkpoints with (repeatable; default DIR/keys/)",
    )
    verify.add_argument(
        "--max-unsigned-age",
        metavar="SECONDS",
        type=float,
        default=600.0,
        help="with --checkpoints: report events older than this that no checkpoint covers",
    )


def _migrate(args: argparse.Namespace) -> int:
    """Migrate as the owner role: FLEETWARD_MIGRATE_DATABASE_URL, else DATABASE_URL."""
    from services.actions.migrate import migrate

    dsn = os.environ.get("FLEETWARD_MIGRATE_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not dsn:
        print(
            "configuration error: set FLEETWARD_MIGRATE_DATABASE_URL (the owner role) or "
            "DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    applied = asyncio.run(migrate(dsn))
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {n}" for n in applied))
    return 0


def _audit(args: argparse.Namespace) -> int:
    """``audit verify``: an auditor needs read access to the database, no secrets."""
    from services.actions.audit.cli import run_verify

    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        print("configuration error: set DATABASE_URL", file=sys.stderr)
        return 2
    return run_verify(dsn, args.workspace, args.checkpoints, args.public_key, args.max_unsigned_age)


def _create_workspace(args: argparse.Namespace, settings: ActionSettings) -> int:
    """Create an empty workspace and print its id."""
    from services.actions.workspaces import run_create

    return run_create(settings.database_url, args.name, args.id)


def _seed_demo(args: argparse.Namespace, settings: ActionSettings) -> int:
    """Create the demo workspace acme and print its id."""
    from services.actions.demo import seed_demo

    workspace = asyncio.run(seed_demo(settings.database_url))
    print(f"demo workspace acme: {workspace}")
    return 0


def _import_agents(args: argparse.Namespace, settings: ActionSettings) -> int:
    """Upsert the agent inventory from the CSV file."""
    from services.actions.inventory import run_import

    return run_import(settings.database_url, args.file, workspace=args.workspace, prune=args.prune)


def _serve(args: argparse.Namespace, settings: ActionSettings) -> int:
    """Run the ActionService until SIGTERM/SIGINT; a bad checkpoint key exits 2."""
    from services.actions.checkpoints.signing import CheckpointError
    from services.actions.server import serve

    try:
        asyncio.run(serve(settings))
    except CheckpointError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


# Commands that read no ActionSettings (they need the database URL and nothing else), and
# those that run on the checked settings.
_WITHOUT_SETTINGS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": _migrate,
    "audit": _audit,
}
_WITH_SETTINGS: dict[str, Callable[[argparse.Namespace, ActionSettings], int]] = {
    "create-workspace": _create_workspace,
    "seed-demo": _seed_demo,
    "import-agents": _import_agents,
    "serve": _serve,
}


if __name__ == "__main__":
    sys.exit(main())
