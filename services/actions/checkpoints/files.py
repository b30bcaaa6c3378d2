"""Append-only checkpoint files: ``<dir>/<workspace_id>.jsonl``, one line per checkpoint.

A line is written with one ``write`` on a descriptor opened ``O_APPEND`` and fsynced
before the writer moves on (the directory too, when the file is new). A process killed
in the middle of a write can leave at most one incomplete last line: readers ignore a
last line without its newline, and the next writer cuts it off before appending (it
was never a complete, signed checkpoint). Public keys are published beside the files
as ``<dir>/keys/<key_id>.pem``.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.actions.checkpoints.signing import (
    CheckpointError,
    key_id,
    load_public_key_bytes,
    public_pem,
)

SUFFIX = ".jsonl"
KEYS_DIR = "keys"
_TAIL = 4096  # a checkpoint line is under 400 bytes


def path_for(directory: Path, workspace_id: uuid.UUID) -> Path:
    """The checkpoint file of a workspace."""
    return directory / f"{workspace_id}{SUFFIX}"


def complete_lines(data: bytes) -> list[bytes]:
    """The newline-terminated lines of ``data`` (an incomplete last line is left out)."""
    return data.split(b"\n")[:-1]


def read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes, never following a symlink or blocking on a FIFO; OSError
    for anything else or anything larger than ``limit``.
    """
    fd = _open_regular(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        if info.st_size > limit:
            raise OSError(f"{path}: larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit + 1)
    finally:
        os.close(fd)


def _open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor on a regular file, never through a symlink and never blocking on a
    FIFO: whoever can write the directory must not make the writer change another file
    (it runs with the service's rights) or hang.
    """
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return fd


def last_line(path: Path) -> bytes | None:
    """The last complete line of a checkpoint file, or None (no file, no complete line)."""
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - _TAIL)
        lines = complete_lines(os.pread(fd, size - start, start))
    finally:
        os.close(fd)
    return lines[-1] if lines else None


def append(path: Path, line: bytes) -> None:
    """Append one line durably, first cutting off an incomplete line a crash left."""
    created = not path.exists()
    fd = _open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.ftruncate(fd, _complete_length(path, fd, size))
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_directory(path.parent)


def _complete_length(path: Path, fd: int, size: int) -> int:
    """The length of the file without its incomplete last line."""
    start = max(0, size - _TAIL)
    cut = os.pread(fd, size - start, start).rfind(b"\n")
    if cut >= 0:
        return start + cut + 1
    if start == 0:
        return 0
    raise OSError(f"{path}: its last {_TAIL} bytes hold no line break; not a checkpoint file")


def publish_public_key(directory: Path, public: Ed25519PublicKey) -> Path:
    """Write ``keys/<key_id>.pem`` beside the checkpoints (once; atomically)."""
    keys = directory / KEYS_DIR
    keys.mkdir(parents=True, exist_ok=True)
    target = keys / f"{key_id(public)}.pem"
    if not target.exists():
        staging = keys / f".{target.name}.{os.getpid()}.tmp"
        staging.write_bytes(public_pem(public))
        with staging.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(staging, target)
        _fsync_directory(keys)
    return target


def published_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    """The public keys under ``keys/``, by id (files that are not Ed25519 keys are skipped)."""
    found: dict[str, Ed25519PublicKey] = {}
    for pem in sorted((directory / KEYS_DIR).glob("*.pem")):
        try:
            public = load_public_key_bytes(read_regular(pem, 64 << 10), pem)
        except (CheckpointError, OSError):
            continue
        found[key_id(public)] = public
    return found


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
