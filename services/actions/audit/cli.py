"""``python -m services.actions audit verify [--workspace ID] [--checkpoints DIR]``: the
command line around :func:`services.actions.audit.verify.verify`; its exit codes are in
:mod:`services.actions.audit`.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from services.actions.audit import documents
from services.actions.audit.verify import NoSchema, VerifyReport, verify
from services.actions.checkpoints import reader
from services.actions.checkpoints.signing import CheckpointError
from services.actions.db import DATABASE_ERRORS


def coverage(report: VerifyReport) -> str:
    """One paragraph on what the checkpoints cover."""
    signed = report.checkpoints
    if signed is None:
        return ""
    covered = [r for r in report.results if signed.newest_seq(r.workspace_id)]
    uncovered = [r for r in report.results if r.last_seq and not signed.newest_seq(r.workspace_id)]
    after = sum(max(0, r.last_seq - signed.newest_seq(r.workspace_id)) for r in covered)
    newest = signed.newest
    lines = [
        f"checkpoints: {signed.count} signed head(s) verified with "
        f"{len(signed.keys)} key(s) from {signed.keys_source}"
        + (f"; newest signed {documents.iso(newest)}" if newest else ""),
        f"  {len(covered)} of {len(report.results)} workspace(s) covered; {after} event(s) "
        "after their newest checkpoint (appended since, not yet signed)",
    ]
    if uncovered:
        lines.append(f"  {len(uncovered)} workspace(s) with events but no checkpoint yet")
    for path in signed.torn:
        lines.append(f"  {path}: incomplete last line ignored (a writer stopped mid-line)")
    return "\n".join(lines)


def run_verify(
    dsn: str,
    workspace: str | None,
    checkpoints_dir: Path | None = None,
    public_keys: Sequence[Path] = (),
    max_unsigned_age_s: float = 600.0,
) -> int:
    """The CLI: 0 everything verifies; 1 something is broken (each finding is named);
    2 nothing could be verified (bad input, unknown workspace, unreadable checkpoints,
    database unreachable).
    """
    ws: uuid.UUID | None = None
    if workspace is not None:
        try:
            ws = uuid.UUID(workspace)
        except ValueError:
            print(f"--workspace must be a UUID, got {workspace!r}", file=sys.stderr)
            return 2
    signed: reader.CheckpointSet | None = None
    if checkpoints_dir is not None:
        try:
            signed = reader.load(checkpoints_dir, public_keys)
        except (CheckpointError, OSError) as exc:
            print(f"cannot read the checkpoints: {exc}", file=sys.stderr)
            return 2
    elif public_keys:
        print("--public-key needs --checkpoints DIR", file=sys.stderr)
        return 2
    try:
        # Stored numbers of any length are read (Python caps int parsing at 4,300 digits).
        sys.set_int_max_str_digits(0)
        report = asyncio.run(
            verify(dsn, ws, checkpoints=signed, max_unsigned_age_s=max_unsigned_age_s)
        )
    except NoSchema as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except DATABASE_ERRORS as exc:
        print(f"cannot reach the database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if ws is not None and report.workspaces == 0:
        print(f"unknown workspace {ws}", file=sys.stderr)
        return 2
    print(
        f"checked {report.events} events in {report.workspaces} workspace(s) in "
        f"{report.seconds:.2f} s ({report.events_per_second:,.0f} events/s): "
        + (f"{len(report.breaks)} finding(s)" if report.breaks else "all chains intact")
        + ", rows and targets cross-checked"
    )
    unsummarised = sum(r.unsummarised for r in report.results)
    if unsummarised:
        print(f"  {unsummarised} action(s) completed before targets were summarised: not checked")
    if signed is not None:
        print(coverage(report))
    return 1 if report.breaks else 0
