"""``python -m services.actions``: serve | migrate | seed-demo | import-agents | audit verify."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from services.common.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    """Parse and run one command."""
    parser = argparse.ArgumentParser(prog="python -m services.actions")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="run the ActionService")
    sub.add_parser("migrate", help="apply pending migrations (safe to run concurrently)")
    sub.add_parser("seed-demo", help="create the demo workspace acme")
    imp = sub.add_parser("import-agents", help="upsert agents from an inventory CSV file")
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.add_argument("--workspace", metavar="ID", help="the workspace of a file without one")
    imp.add_argument("--prune", action="store_true", help="retire agents the file omits")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.cmd == "migrate":
        return _migrate()
    if args.cmd == "audit":
        # An auditor needs read access to the database and nothing else (no secrets).
        from services.actions.audit_cli import run_verify

        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            print("configuration error: set DATABASE_URL", file=sys.stderr)
            return 2
        return run_verify(
            dsn, args.workspace, args.checkpoints, args.public_key, args.max_unsigned_age
        )

    from services.actions.settings import ActionSettings

    try:
        settings = ActionSettings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2

    if args.cmd == "seed-demo":
        from services.actions.demo import seed_demo

        workspace = asyncio.run(seed_demo(settings.database_url))
        print(f"demo workspace acme: {workspace}")
        return 0
    if args.cmd == "import-agents":
        from services.actions.inventory import run_import

        return run_import(
            settings.database_url, args.file, workspace=args.workspace, prune=args.prune
        )
    from services.actions.checkpoints.signing import CheckpointError
    from services.actions.server import serve

    try:
        asyncio.run(serve(settings))
    except CheckpointError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


def _migrate() -> int:
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


if __name__ == "__main__":
    sys.exit(main())
