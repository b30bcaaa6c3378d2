"""``fleetward.client`` traces the channels it opens when OpenTelemetry is installed, and
opens plain ones when it is not."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import grpc
import pytest
from fleetward.client import ClientConfig, _tracing
from fleetward.client._async.transport import open_channel as open_async_channel
from fleetward.client._sync.transport import open_channel

from tests.tracing.conftest import spy

CONFIG = ClientConfig(target="127.0.0.1:9")


@pytest.fixture
def without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if ``fleetward-client[tracing]`` were not installed (importing it fails)."""
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.grpc", None)
    _tracing._instrumentation.cache_clear()
    yield
    _tracing._instrumentation.cache_clear()


async def test_with_opentelemetry_every_channel_gets_its_client_interceptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = spy(monkeypatch, grpc.aio, "insecure_channel")
    channel = open_async_channel(CONFIG)
    await channel.close()
    assert len(opened[0]["interceptors"]) == 4

    blocking = open_channel(CONFIG)
    assert type(blocking).__module__.startswith("opentelemetry.instrumentation.grpc")
    blocking.close()


def test_blocking_clients_trace_unary_calls_only() -> None:
    unary = type("Unary", (), {"full_method": "/x/Y", "timeout": None})()
    stream = type("Stream", (), {"is_server_stream": True, "is_client_stream": False})()
    assert _tracing._unary_only(unary)
    assert not _tracing._unary_only(stream)


@pytest.mark.usefixtures("without_opentelemetry")
async def test_without_opentelemetry_the_channels_are_grpcs_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = spy(monkeypatch, grpc.aio, "insecure_channel")
    channel = open_async_channel(CONFIG)
    await channel.close()
    assert opened[0]["interceptors"] is None

    blocking = open_channel(CONFIG)
    assert type(blocking).__module__ == "grpc._channel"
    blocking.close()
