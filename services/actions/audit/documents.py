"""The canonical form of the audit trail: event documents, their hashes, row snapshots.

The hashed document of an event is ``{"workspace_id", "seq", "action_id", "event_type",
"payload", "created_at"}`` (:func:`event_document`); ``hash = sha256(prev_hash ||
canonical(document))`` with canonical JSON (sorted keys, ``(",", ":")``, UTF-8, UTC
ISO-8601 timestamps with microseconds); the first event's ``prev_hash`` is 64 zeros.
PostgreSQL computes the hashes from the pieces the service sends (:func:`doc_head`,
:func:`doc_tail`): the seq is only known under the chain head's lock. The verifier
(:mod:`services.actions.audit.chain`) recomputes them with :func:`chain_hash` over the
same pieces. See docs/architecture.md §6.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.actions.db import Row

GENESIS_HASH = "0" * 64


def iso(value: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds (the canonical timestamp form), or None."""
    if value is None:
        return None
    # isoformat is strftime("%Y-%m-%dT%H:%M:%S.%fZ") for years 1000..9999, at 2/3 the cost.
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(value: object) -> datetime | None:
    """The inverse of :func:`iso`."""
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, ``(",", ":")`` separators, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev_hash: str, event: Row) -> str:
    """``sha256(prev_hash || canonical(event))`` as hex: the definition (tests forge with it)."""
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


def chain_hash(prev_hash: str, head: bytes, seq: int, tail: bytes) -> str:
    """The hash the writer computes: ``sha256(prev_hash || head || seq || tail)`` over the
    pieces of :func:`doc_head` and :func:`doc_tail` (``fleetward_append_events`` does the
    same in SQL); equal to :func:`event_hash` of :func:`event_document`.
    """
    return hashlib.sha256(prev_hash.encode() + head + str(seq).encode() + tail).hexdigest()


def event_document(
    workspace_id: uuid.UUID,
    seq: int,
    action_id: uuid.UUID,
    event_type: str,
    payload: Any,
    created_at: datetime,
) -> dict[str, Any]:
    """The hashed form of one event."""
    return {
        "workspace_id": str(workspace_id),
        "seq": seq,
        "action_id": str(action_id),
        "event_type": event_type,
        "payload": payload,
        "created_at": iso(created_at),
    }


def snapshot(row: Row) -> dict[str, Any]:
    """An audit row as the JSON payload of its event (the Action at that moment).

    ``trace_id`` is in it only when the row has one: the events of rows recorded before
    the column existed (and of untraced requests) stay byte for byte what they were, so
    `audit verify` compares old rows with old events unchanged (docs/DECISIONS.md).
    """
    roles = [r for r in (row["actor_role"] or "").split(",") if r]
    snap = {
        "action_id": str(row["action_id"]),
        "workspace_id": str(row["workspace_id"]),
        "action_type": row["action_type"],
        "scope": row["scope"],
        "target_id": row["target_id"],
        "params": row["action_params"],
        "reason": row["reason"],
        "status": row["status"],
        "result": row["result"],
        "error_message": row["error_message"],
        "actor": {"subject": row["actor_user_id"], "roles": roles},
        "can_rollback": row["can_rollback"],
        "rollback_action_id": _str(row["rollback_action_id"]),
        "rollback_of_action_id": _str(row["rollback_of_action_id"]),
        "policy_version": row["policy_version"],
        "decision_id": row["decision_id"],
        "request_id": row["request_id"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "completed_at": iso(row["completed_at"]),
        "rolled_back_at": iso(row["rolled_back_at"]),
    }
    if row["trace_id"] is not None:
        snap["trace_id"] = row["trace_id"]
    return snap


def payload_row(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`snapshot`: an event payload in the row shape it was made from
    (the shape :func:`services.actions.convert.action` reads).
    """
    actor = payload.get("actor") or {}
    row = dict(payload)
    row["action_params"] = payload.get("params")
    row["actor_user_id"] = actor.get("subject", "")
    row["actor_role"] = ",".join(actor.get("roles", ()))
    row.setdefault("trace_id", None)  # events recorded before actions had one
    for name in ("created_at", "started_at", "completed_at", "rolled_back_at"):
        row[name] = parse_iso(payload.get(name))
    return row


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def event_for(row: Row) -> tuple[uuid.UUID, str, dict[str, Any]]:
    """The event announcing ``row``'s current status."""
    return (row["action_id"], f"action.{row['status']}", snapshot(row))


def targets_summary(
    rows: Iterable[tuple[str, str, Any, Any]], encode: Callable[[Any], bytes] | None = None
) -> dict[str, Any]:
    """What an action's ``action_targets`` rows were when it completed: how many, and the
    SHA-256 of their canonical JSON (``[[kind, key, before, after], …]`` sorted by kind and
    key). The completed event carries it, so ``audit verify`` can tell a destroyed or
    rewritten row of ``action_targets`` from the history the chain signs. ``encode``
    replaces :func:`canonical` for values already in jsonb's form (the verifier's fast
    path, which falls back to this function's own form when they differ).
    """
    if encode is None:
        items = [[k, key, jsonb_value(b), jsonb_value(a)] for k, key, b, a in rows]
    else:
        items = [[k, key, b, a] for k, key, b, a in rows]
    items.sort(key=lambda item: (item[0], item[1]))
    body = (encode or canonical)(items)
    return {"count": len(items), "sha256": hashlib.sha256(body).hexdigest()}


def completed_event(
    row: Row, targets: Iterable[tuple[str, str, Any, Any]]
) -> tuple[uuid.UUID, str, dict[str, Any]]:
    """The ``action.completed`` event: the row's snapshot and its targets' summary."""
    action_id, event_type, payload = event_for(row)
    payload["targets"] = targets_summary(targets)
    return action_id, event_type, payload


def doc_tail(workspace_id: uuid.UUID) -> bytes:
    """The canonical document's bytes after its ``seq``: ``,"workspace_id":"…"}``."""
    return b',"workspace_id":' + canonical(str(workspace_id)) + b"}"


def doc_head(
    action_id: uuid.UUID,
    event_type: str,
    payload: Any,
    created_at: datetime,
    encode: Callable[[Any], bytes] | None = None,
) -> bytes:
    """The canonical document's bytes before its ``seq`` value, ending in ``"seq":``.

    Keys sort ``action_id < created_at < event_type < payload < seq < workspace_id``, so
    ``doc_head + str(seq) + doc_tail`` is exactly :func:`canonical` of
    :func:`event_document`; PostgreSQL appends the seq it assigns under the chain lock.
    ``encode`` replaces :func:`canonical` (the verifier's faster first try).
    """
    body = (encode or canonical)(
        {
            "action_id": str(action_id),
            "created_at": iso(created_at),
            "event_type": event_type,
            "payload": payload,
        }
    )
    return body[:-1] + b',"seq":'


def jsonb_value(value: Any) -> Any:
    """``value`` as it reads back from a ``jsonb`` column (what the hash must cover).

    Events are hashed before PostgreSQL stores them, and ``audit verify`` rehashes what it
    reads back, so a payload must already be in jsonb's form: jsonb keeps numbers as
    ``numeric`` and prints them without an exponent (``1e+16`` reads back as the integer
    ``10000000000000000``, ``-0.0`` as ``0.0``). Everything else round-trips unchanged.
    """
    if isinstance(value, float):
        return _jsonb_number(value)
    if isinstance(value, dict):
        return {k: jsonb_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonb_value(v) for v in value]
    return value


def _jsonb_number(value: float) -> Any:
    text = json.dumps(value)
    if "e" not in text and "E" not in text and text != "-0.0":
        return value
    plain = format(Decimal(text), "f")
    if plain.startswith("-") and Decimal(plain) == 0:
        plain = plain[1:]
    return json.loads(plain)
