"""observed(): every RPC method of a servicer reports once, when it ends, with its outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.common.observe import observed, status_code


class Context:
    """The part of a grpc.aio context the observers read."""

    def __init__(self, code: grpc.StatusCode | None = None) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code


class Servicer:
    async def Unary(self, request: str, context: Any) -> str:
        return request.upper()

    async def Fails(self, request: str, context: Any) -> str:
        raise RuntimeError("boom")

    async def Stream(self, request: str, context: Any) -> AsyncIterator[str]:
        for char in request:
            yield char

    def helper(self) -> str:
        return "not an RPC"


async def test_unary_stream_and_failure_are_each_reported_once() -> None:
    seen: list[tuple[str, str, bool]] = []

    def observer(method: str, request: Any, context: Any, start: float, failed: bool) -> None:
        seen.append((method, status_code(context, failed), failed))

    proxy = observed(Servicer(), "test.v1.Svc", [observer])
    assert await proxy.Unary("ab", Context()) == "AB"
    assert [c async for c in proxy.Stream("xy", Context())] == ["x", "y"]
    with pytest.raises(RuntimeError):
        await proxy.Fails("x", Context())
    assert proxy.helper() == "not an RPC"
    assert proxy.Unary is proxy.Unary  # wrapped once
    assert seen == [
        ("/test.v1.Svc/Unary", "OK", False),
        ("/test.v1.Svc/Stream", "OK", False),
        ("/test.v1.Svc/Fails", "UNKNOWN", True),
    ]
