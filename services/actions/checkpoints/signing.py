"""What a checkpoint says and how it is signed: Ed25519 over canonical JSON.

A checkpoint is one JSON line::

    {"hash": "…", "key_id": "…", "seq": 42, "sig": "<base64>", "time": "…Z",
     "v": 1, "workspace_id": "…"}

``sig`` signs the canonical JSON (sorted keys, ``(",", ":")``, UTF-8) of every other
field. ``key_id`` names the public key that verifies it: the first 16 hex digits of the
SHA-256 of the raw 32-byte public key, so rotating the key changes the id and old lines
keep verifying with the old public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.actions.audit.documents import canonical, iso

VERSION = 1
_HASH = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


class CheckpointError(ValueError):
    """A checkpoint line that cannot be trusted, and why."""


def key_id(public: Ed25519PublicKey) -> str:
    """The id of a public key: 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    """A public key as PEM (SubjectPublicKeyInfo), the form published and passed around."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class SigningKey:
    """The private key checkpoints are signed with, and its id."""

    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        """Its public key."""
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        """Its public key's id."""
        return key_id(self.public)


def load_signing_key(path: Path) -> SigningKey:
    """Read an Ed25519 private key (PEM, PKCS#8, unencrypted); CheckpointError if not one."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path}: the checkpoint key must be an Ed25519 key")
    return SigningKey(key)


def load_private_key_file(path: Path) -> SigningKey:
    """:func:`load_signing_key`, refusing a file that others may read (like ssh does)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint key ({exc.strerror})") from exc
    if mode & 0o077:
        raise CheckpointError(
            f"{path}: the checkpoint key is readable by others (mode {mode & 0o777:o}); "
            f"chmod 600 {path}"
        )
    return load_signing_key(path)


def create_signing_key(path: Path) -> SigningKey:
    """Generate a key into ``path`` (mode 0600, never overwriting one); the dev setup's."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return SigningKey(private)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM); CheckpointError if it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable PEM public key") from exc
    return load_public_key_bytes(data, path)


def load_public_key_bytes(data: bytes, path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes (``path`` names it in errors)."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{path}: not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: at ``time``, the chain of ``workspace_id`` ended at (seq, hash)."""

    workspace_id: uuid.UUID
    seq: int
    hash: str
    time: datetime
    key_id: str

    def body(self) -> dict[str, object]:
        """The signed fields."""
        return {
            "v": VERSION,
            "workspace_id": str(self.workspace_id),
            "seq": self.seq,
            "hash": self.hash,
            "time": iso(self.time),
            "key_id": self.key_id,
        }


def sign(checkpoint: Checkpoint, key: SigningKey) -> bytes:
    """The checkpoint's line (canonical JSON with ``sig``), without the newline."""
    body = checkpoint.body()
    signature = key.private.sign(canonical(body))
    return canonical({**body, "sig": base64.b64encode(signature).decode()})


def parse(line: bytes, keys: dict[str, Ed25519PublicKey]) -> Checkpoint:
    """A line's checkpoint if its signature verifies under the key it names."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError("not a JSON line") from exc
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise CheckpointError(f"not a version {VERSION} checkpoint")
    sig, kid = doc.pop("sig", None), doc.get("key_id")
    if not isinstance(kid, str) or not _KEY_ID.match(kid):
        raise CheckpointError("no valid key_id")
    if kid not in keys:
        raise CheckpointError(f"signed by unknown key {kid}")
    try:
        signature = base64.b64decode(str(sig), validate=True)
        keys[kid].verify(signature, canonical(doc))
    except (binascii.Error, InvalidSignature) as exc:
        raise CheckpointError(f"the signature does not verify with key {kid}") from exc
    # Signed by us, so well formed; checked anyway, a key can be misused.
    try:
        checkpoint = Checkpoint(
            uuid.UUID(doc["workspace_id"]),
            int(doc["seq"]),
            str(doc["hash"]),
            datetime.fromisoformat(str(doc["time"])),
            kid,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError("a signed field is malformed") from exc
    if set(doc) != set(checkpoint.body()) or checkpoint.seq < 1 or not _HASH.match(checkpoint.hash):
        raise CheckpointError("a signed field is malformed")
    return checkpoint
