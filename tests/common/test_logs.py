"""JSON log lines carry their context fields and never a token."""

from __future__ import annotations

import io
import json
import logging

from services.common import logs
from services.common.tokens import mint_user_token


def test_log_line_is_json_with_context_fields_and_redacted_token() -> None:
    stream = io.StringIO()
    logs.configure("actions", "INFO", stream)
    token = mint_user_token("s3cret-value-for-test-with-32-bytes-or-more", "bob")
    logging.getLogger("fleetward.test").info(
        "call with authorization: Bearer %s",
        token,
        extra={"action_id": "a1", "request_id": "r1", "subject": "bob", "latency_ms": 1.5},
    )
    line = stream.getvalue().strip()
    entry = json.loads(line)
    assert entry["service"] == "actions"
    assert entry["action_id"] == "a1"
    assert entry["request_id"] == "r1"
    assert entry["subject"] == "bob"
    assert entry["latency_ms"] == 1.5
    assert token not in line
    assert "[redacted]" in entry["message"]


def test_exception_text_is_redacted() -> None:
    stream = io.StringIO()
    logs.configure("policy", "INFO", stream)
    token = mint_user_token("another-secret-that-is-long-enough-for-hs256", "carol")
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        logging.getLogger("fleetward.test").exception("failed")
    assert token not in stream.getvalue()
