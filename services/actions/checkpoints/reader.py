"""Load a checkpoint directory for ``audit verify --checkpoints`` and check every signature.

Public keys come from ``--public-key`` files when given (an auditor pins the keys they
got from a trusted place), otherwise from the directory's ``keys/`` (convenient, but
whoever can write the directory could also plant a key there: verify says which).
Every complete line must verify under the key it names and belong to the workspace its
file is named after; an incomplete last line (a writer killed mid-write) is ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.actions.checkpoints import files
from services.actions.checkpoints.signing import (
    Checkpoint,
    CheckpointError,
    key_id,
    load_public_key,
    parse,
)

# Far beyond a century of one line a minute (about 200 bytes each).
MAX_FILE_BYTES = 2 << 30


@dataclass(frozen=True)
class BadLine:
    """A checkpoint line that does not verify."""

    path: Path
    line: int  # 1-based; 0: the file itself
    workspace_id: uuid.UUID | None
    detail: str


@dataclass
class CheckpointSet:
    """Every verified checkpoint by workspace (ascending seq) and every bad line."""

    keys: dict[str, Ed25519PublicKey]
    keys_source: str
    by_workspace: dict[uuid.UUID, list[Checkpoint]] = field(default_factory=dict)
    bad: list[BadLine] = field(default_factory=list)
    torn: list[Path] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many checkpoints verified."""
        return sum(len(v) for v in self.by_workspace.values())

    @property
    def newest(self) -> datetime | None:
        """When the newest checkpoint was signed."""
        times = [c.time for v in self.by_workspace.values() for c in v]
        return max(times) if times else None

    def newest_seq(self, workspace_id: uuid.UUID) -> int:
        """The highest signed seq of a workspace (0 without checkpoints)."""
        signed = self.by_workspace.get(workspace_id)
        return signed[-1].seq if signed else 0


def load(directory: Path, public_keys: Sequence[Path] = ()) -> CheckpointSet:
    """Read and verify every ``<workspace_id>.jsonl`` in ``directory``.

    Raises CheckpointError when no key is available or a ``--public-key`` is unreadable.
    """
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such directory")
    if public_keys:
        keys = {key_id(k): k for k in (load_public_key(p) for p in public_keys)}
        source = "--public-key"
    else:
        keys = files.published_keys(directory)
        source = f"{directory / files.KEYS_DIR} (pass --public-key to pin the keys)"
    if not keys:
        raise CheckpointError(
            f"no public key: none under {directory / files.KEYS_DIR} and no --public-key"
        )
    found = CheckpointSet(keys, source)
    for path in sorted(directory.glob(f"*{files.SUFFIX}")):
        _load_file(path, found)
    for signed in found.by_workspace.values():
        signed.sort(key=lambda c: (c.seq, c.time))
    return found


def _load_file(path: Path, into: CheckpointSet) -> None:
    try:
        workspace_id: uuid.UUID | None = uuid.UUID(path.name.removesuffix(files.SUFFIX))
    except ValueError:
        workspace_id = None
    try:
        data = files.read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        into.bad.append(
            BadLine(path, 0, workspace_id, f"cannot be read as a checkpoint file: {exc}")
        )
        return
    lines = files.complete_lines(data)
    if data and not data.endswith(b"\n"):
        into.torn.append(path)
    if workspace_id is None:
        into.bad.append(BadLine(path, 1, None, "the file is not named <workspace_id>.jsonl"))
        return
    for number, line in enumerate(lines, start=1):
        try:
            checkpoint = parse(line, into.keys)
        except CheckpointError as exc:
            into.bad.append(BadLine(path, number, workspace_id, str(exc)))
            continue
        except Exception as exc:  # whatever else a crafted line does, it is not a checkpoint
            into.bad.append(
                BadLine(path, number, workspace_id, f"not a checkpoint ({type(exc).__name__})")
            )
            continue
        if checkpoint.workspace_id != workspace_id:
            into.bad.append(
                BadLine(path, number, workspace_id, f"signed for {checkpoint.workspace_id}")
            )
            continue
        into.by_workspace.setdefault(workspace_id, []).append(checkpoint)
