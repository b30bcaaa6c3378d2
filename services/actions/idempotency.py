"""Idempotency on ``(workspace_id, actor, request_id)`` (docs/architecture.md §5.3, §5.7).

The claim itself is the atomic ``INSERT … ON CONFLICT DO NOTHING`` of the action's row
(:mod:`services.actions.lifecycle`: the final row at the end of the one transaction, or
the pending row of the two-step form); this module fingerprints requests and turns an
existing row into the original outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from services.actions import action_lock, errors, store
from services.actions.audit import documents
from services.actions.db import Conn, one
from services.actions.model import UNFINISHED, ActionRecord, ActionStatus


def fingerprint(request: Mapping[str, Any]) -> str:
    """sha256 of the canonical request (without request_id and validate_only)."""
    return hashlib.sha256(documents.canonical(dict(request))).hexdigest()


async def replay(conn: Conn, row: ActionRecord, request_fp: str) -> ActionRecord:
    """The original outcome of ``row``: the row itself, or its error raised.

    A pending or in-progress row whose executor is gone (its advisory lock is free) is
    recovered here: marked ``failed`` as interrupted, and that error is returned.
    """
    action_id = row.action_id
    if row.request_fingerprint != request_fp:
        raise errors.idempotency_key_reused(row.request_id, str(action_id))
    if row.status in UNFINISHED:
        row = await _recover_if_orphaned(conn, row)
    if row.status in (ActionStatus.COMPLETED, ActionStatus.ROLLED_BACK):
        return row
    details = row.error_details
    if row.status in (ActionStatus.FAILED, ActionStatus.DENIED) and details:
        raise errors.from_json(details)
    raise errors.execution_failed(str(action_id), row.error_message or action_lock.INTERRUPTED)


async def _recover_if_orphaned(conn: Conn, row: ActionRecord) -> ActionRecord:
    action_id = row.action_id
    orphan = await action_lock.fail_if_orphaned(conn, row.workspace_id, action_id)
    if orphan.alive:
        raise errors.request_in_progress(row.request_id, str(action_id))
    if orphan.failed is not None:
        return orphan.failed
    # Its executor finished between our read and our lock: answer its outcome.
    return one(await store.actions.get(conn, row.workspace_id, action_id), "action")
