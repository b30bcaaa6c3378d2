"""Opaque keyset page tokens bound to the workspace and the filters they were issued for."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from services.actions.audit import documents
from services.common.status import FieldViolation, ServiceError, invalid_argument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Our tokens are about 150 characters; anything much longer was not issued by us.
MAX_TOKEN = 1024


def page_size(requested: int) -> int:
    """The effective page size (default 50); negative or above 500 → INVALID_ARGUMENT."""
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise invalid_argument([FieldViolation("page_size", f"must be 0..{MAX_PAGE_SIZE}")])
    return requested or DEFAULT_PAGE_SIZE


def _binding(filters: Mapping[str, Any]) -> str:
    return hashlib.sha256(documents.canonical(dict(filters))).hexdigest()[:24]


def encode(filters: Mapping[str, Any], cursor: list[Any]) -> str:
    """A token for the page after ``cursor`` under ``filters`` (workspace included)."""
    raw = documents.canonical({"f": _binding(filters), "c": cursor})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def malformed() -> ServiceError:
    """INVALID_ARGUMENT for a page token we could not have issued."""
    return invalid_argument([FieldViolation("page_token", "malformed page token")])


def decode(token: str, filters: Mapping[str, Any]) -> list[str] | None:
    """The cursor of ``token`` (None for an empty token); INVALID_ARGUMENT when it does not fit.

    A cursor is a list of strings; callers check what each string must look like.
    """
    if not token:
        return None
    if len(token) > MAX_TOKEN:
        raise malformed()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        cursor = data["c"]
        bound = data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise malformed() from exc
    if bound != _binding(filters) or not isinstance(cursor, list):
        raise invalid_argument(
            [FieldViolation("page_token", "was issued for another workspace or other filters")]
        )
    if not all(isinstance(value, str) for value in cursor):
        raise malformed()
    return cursor
