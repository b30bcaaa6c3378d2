"""Recomputing one workspace's hash chain, event by event (``audit verify``'s first job).

:class:`ChainCheck` is fed the stored events in ``seq`` order and reports every break
(what each kind means: :mod:`services.actions.audit`); it also remembers, per action,
the newest snapshot the chain signs, for :mod:`services.actions.audit.crosscheck`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.actions.audit import documents
from services.actions.checkpoints.signing import Checkpoint

# Where the payload sits in the canonical document head: its last key.
_PAYLOAD_KEY = b',"payload":'
_SEQ_KEY = b',"seq":'
_TARGETS_KEY = b',"targets":'
# Chain breaks recorded per workspace (a rewritten chain breaks at every event).
MAX_CHAIN_BREAKS = 1000


@dataclass(frozen=True)
class Break:
    """One finding: a chain's first break, a bad checkpoint, or a row that disagrees."""

    workspace_id: uuid.UUID | None
    seq: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"workspace={self.workspace_id}" + ("" if self.seq is None else f" seq={self.seq}")
        return f"BROKEN {where} {self.kind}: {self.detail}"


@dataclass(slots=True)
class Seen:
    """What the chain says of one action: its newest snapshot (as a digest) and the
    ``action_targets`` summary its completed event recorded.
    """

    newest_seq: int
    fingerprint: bytes  # of the newest payload without its "targets"
    targets: dict[str, Any] | None = None
    # Completed before completed events carried the summary: its targets cannot be checked.
    unsummarised: bool = False


def fingerprint(canonical_payload: bytes) -> bytes:
    """The digest a snapshot is compared by (its canonical JSON's sha256)."""
    return hashlib.sha256(canonical_payload).digest()


def fast_canonical(value: Any) -> bytes:
    """:func:`documents.canonical`'s form made by orjson, five to ten times faster.

    For what jsonb holds (objects, arrays, strings, integers, booleans, null) the bytes
    are the same; a float may be written differently. So this is only ever a first try:
    wherever its result disagrees with a stored hash or fingerprint, the verifier
    recomputes with :func:`documents.canonical`, the writer's own function, which decides.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits
        return documents.canonical(value)


def fast_loads(text: str) -> Any:
    """Parse JSON with orjson, or the standard library for what orjson refuses. A first
    try like :func:`fast_canonical`: orjson may round an extreme float differently, so a
    disagreement is settled by ``json.loads``, as the service reads.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass
class ChainCheck:
    """Streaming verification of one chain: feed events in ``seq`` order, then the head."""

    workspace_id: uuid.UUID
    signed: Sequence[Checkpoint] = ()
    events: int = 0
    prev_hash: str = documents.GENESIS_HASH
    expected_seq: int = 1
    actions: dict[uuid.UUID, Seen] = field(default_factory=dict)
    # The oldest time of an event past the newest checkpoint (None: all covered).
    first_unsigned: datetime | None = None
    _next_signed: int = 0
    _newest_signed: int = 0
    _tail: bytes = b""

    def __post_init__(self) -> None:
        self._tail = documents.doc_tail(self.workspace_id)
        self._newest_signed = self.signed[-1].seq if self.signed else 0

    def feed(self, row: asyncpg.Record) -> list[Break]:
        """Check the next event; every finding it has. Feeding goes on after a finding, from
        what is stored (a gap's next event, a broken link, the stored hash), so one bad
        event cannot hide what comes after it, nor another finding of its own.
        """
        self.events += 1
        seq = int(row["seq"])
        found: list[Break] = []
        if seq != self.expected_seq:
            missing = f"{self.expected_seq}" + (
                f"..{seq - 1}" if seq - 1 > self.expected_seq else ""
            )
            found.append(
                Break(self.workspace_id, self.expected_seq, "deleted", f"seq {missing} missing")
            )
        elif row["prev_hash"] != self.prev_hash:
            found.append(
                Break(self.workspace_id, seq, "relinked", "does not link to the previous event")
            )
        link = row["prev_hash"]
        try:
            head, payload, encode, digest = self._hash(row, seq, link)
        except (ValueError, RecursionError) as exc:
            found.append(unreadable(self.workspace_id, seq, f"event seq {seq}", exc))
        else:
            if row["hash"] != digest:
                found.append(
                    Break(
                        self.workspace_id,
                        seq,
                        "edited",
                        "the event's content does not match its hash",
                    )
                )
            self._remember(row["action_id"], seq, head, payload, row["event_type"], encode)
        # Checkpoints sign stored hashes: compare with what is stored.
        signed = self._against_checkpoints(seq, row["hash"])
        if signed is not None:
            found.append(signed)
        if seq > self._newest_signed:
            created = row["created_at"]
            if self.first_unsigned is None or created < self.first_unsigned:
                self.first_unsigned = created
        self.prev_hash, self.expected_seq = row["hash"], seq + 1
        return found

    def _hash(
        self, row: asyncpg.Record, seq: int, link: str
    ) -> tuple[bytes, Any, Callable[[Any], bytes], str]:
        """The event's document head, payload, encoder and hash: orjson's first, the
        writer's own forms whenever they do not reproduce the stored hash.
        """
        text = row["payload"]
        payload = fast_loads(text)
        head = documents.doc_head(
            row["action_id"], row["event_type"], payload, row["created_at"], fast_canonical
        )
        digest = documents.chain_hash(link, head, seq, self._tail)
        if row["hash"] == digest:
            return head, payload, fast_canonical, digest
        payload = json.loads(text)
        head = documents.doc_head(row["action_id"], row["event_type"], payload, row["created_at"])
        return head, payload, documents.canonical, documents.chain_hash(link, head, seq, self._tail)

    def _against_checkpoints(self, seq: int, digest: str) -> Break | None:
        found = None
        while self._next_signed < len(self.signed) and self.signed[self._next_signed].seq <= seq:
            signed = self.signed[self._next_signed]
            self._next_signed += 1
            if signed.seq == seq and signed.hash != digest and found is None:
                found = Break(
                    self.workspace_id,
                    seq,
                    "forged_suffix",
                    f"the checkpoint signed at {documents.iso(signed.time)} (key {signed.key_id}) "
                    f"says seq {seq} has hash {signed.hash[:16]}…, the chain has "
                    f"{digest[:16]}…: the history up to here was rewritten",
                )
        return found

    def _remember(
        self,
        action_id: uuid.UUID,
        seq: int,
        head: bytes,
        payload: Any,
        event_type: str,
        encode: Callable[[Any], bytes],
    ) -> None:
        # The payload's canonical bytes are a slice of the hashed document: no second dump.
        # Its "targets" summary (the last key but workspace_id, after any nested one) is
        # cut out: a row's snapshot has none, and the targets are compared on their own.
        start = head.index(_PAYLOAD_KEY) + len(_PAYLOAD_KEY)
        body = head[start : -len(_SEQ_KEY)]
        targets = payload.get("targets") if isinstance(payload, dict) else None
        if targets is not None:
            segment = _TARGETS_KEY + encode(targets)
            cut = body.rfind(segment)
            if cut >= 0:
                body = body[:cut] + body[cut + len(segment) :]
        seen = self.actions.get(action_id)
        if seen is None:
            seen = self.actions[action_id] = Seen(seq, b"")
        seen.newest_seq, seen.fingerprint = seq, fingerprint(body)
        if isinstance(targets, dict):
            seen.targets = targets
        elif event_type == "action.completed":
            seen.unsummarised = True

    def finish(self, head: asyncpg.Record | None) -> Break | None:
        """Compare the chain's end with the newest checkpoint and ``audit_chain_heads``."""
        last = self.expected_seq - 1
        if self.signed and self.signed[-1].seq > last:
            newest = self.signed[-1]
            return Break(
                self.workspace_id,
                last + 1,
                "truncated_after_checkpoint",
                f"the chain ends at seq {last}, but a checkpoint signed at "
                f"{documents.iso(newest.time)} saw seq {newest.seq}",
            )
        if head is None:
            return Break(self.workspace_id, last, "head_mismatch", "no audit_chain_heads row")
        head_seq = int(head["last_seq"])
        if head_seq > last:
            return Break(
                self.workspace_id,
                last + 1,
                "head_mismatch",
                f"the chain ends at seq {last} but the head says {head_seq} "
                "(the newest event was deleted)",
            )
        if head_seq != last or head["last_hash"] != self.prev_hash:
            return Break(
                self.workspace_id,
                last,
                "head_mismatch",
                f"the head (seq {head_seq}) does not match the last event (seq {last})",
            )
        return None


def reason_of(exc: BaseException) -> str:
    """What went wrong reading stored data, in one short line."""
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:120]}"


def unreadable(
    workspace_id: uuid.UUID, seq: int | None, what: str, exc: BaseException | None
) -> Break:
    """An ``undecodable`` finding: stored data the verifier cannot read."""
    detail = what if exc is None else f"{what} ({reason_of(exc)})"
    return Break(
        workspace_id, seq, "undecodable", f"{detail}: stored data this verifier cannot read"
    )
