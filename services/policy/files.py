"""Reading the policy directory once, into memory, so the version hash covers what is loaded.

Files are read exactly once per load: the content hash (``policy_version``), the
validator and the enforcer all see the same bytes, even while an editor is writing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
TESTS_DIR = "tests"
VERSION_LENGTH = 12
_CHUNK_CHARS = 1 << 16


class PolicyFilesError(Exception):
    """The policy directory is missing a file or cannot be read."""


@dataclass(frozen=True)
class PolicyFiles:
    """The text of one policy directory: model, policy lines and test suites."""

    directory: Path
    model_text: str
    policy_text: str
    tests: tuple[tuple[str, str], ...] = ()  # (file path, text), sorted by path
    model_file: str = MODEL_FILE
    policy_file: str = POLICY_FILE

    @property
    def model_path(self) -> str:
        """The model file's path, as messages name it."""
        return str(self.directory / self.model_file)

    @property
    def policy_path(self) -> str:
        """The policy file's path, as messages name it."""
        return str(self.directory / self.policy_file)

    @property
    def version(self) -> str:
        """Short content hash of the model and policy (the files that decide)."""
        digest = hashlib.sha256()
        for text in (self.model_text, self.policy_text):
            digest.update(_utf8_length(text).to_bytes(8, "big"))
            for chunk in _utf8_chunks(text):
                digest.update(chunk)
        return digest.hexdigest()[:VERSION_LENGTH]


def _utf8_chunks(text: str) -> Iterator[bytes]:
    """``text.encode()`` in pieces: a whole copy of a large policy would stay in the heap
    after the load (docs/architecture.md §7).
    """
    for start in range(0, len(text), _CHUNK_CHARS):
        yield text[start : start + _CHUNK_CHARS].encode()


def _utf8_length(text: str) -> int:
    """``len(text.encode())`` without the copy."""
    if text.isascii():
        return len(text)
    return sum(len(chunk) for chunk in _utf8_chunks(text))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PolicyFilesError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise PolicyFilesError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise PolicyFilesError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_policy_dir(directory: Path, *, with_tests: bool = True) -> PolicyFiles:
    """Read ``model.conf``, ``policy.csv`` and (optionally) ``tests/*.yaml`` of a directory.

    Args:
        directory: The policy directory (``policies/``).
        with_tests: Also read the YAML test suites under ``tests/``.

    Raises:
        PolicyFilesError: When the directory or a required file is missing or unreadable.
    """
    if not directory.is_dir():
        raise PolicyFilesError(f"{directory}: not a directory")
    model_text = _read(directory / MODEL_FILE)
    policy_text = _read(directory / POLICY_FILE)
    tests: list[tuple[str, str]] = []
    tests_dir = directory / TESTS_DIR
    if with_tests and tests_dir.is_dir():
        for path in sorted([*tests_dir.glob("*.yaml"), *tests_dir.glob("*.yml")]):
            tests.append((str(path), _read(path)))
    return PolicyFiles(directory, model_text, policy_text, tuple(tests))
