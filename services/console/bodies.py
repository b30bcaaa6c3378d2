"""Reading a request body with a limit enforced while it arrives, not after."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(ValueError):
    """The body is longer than the route accepts (HTTP 413)."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass ``limit`` bytes: from its
    ``Content-Length`` before anything is read, else while the chunks arrive (a chunked
    upload), so an oversized body never sits in memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge(f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
