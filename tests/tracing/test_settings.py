"""The OTEL_* variables: what turns tracing on, what is refused at start."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.actions.settings import ActionSettings
from services.common import tracing
from services.common.settings import SettingsError
from services.common.tracing_settings import TracingSettings
from services.policy.settings import PolicySettings
from tests.tracing.conftest import asyncpg_instrumented


def settings(**env: str) -> TracingSettings:
    return TracingSettings.from_env(env, "fleetward-test")


def test_off_unless_an_exporter_is_named() -> None:
    assert not settings().enabled
    assert not settings(OTEL_TRACES_EXPORTER="none").enabled
    assert not settings(OTEL_TRACES_EXPORTER="otlp", OTEL_SDK_DISABLED="true").enabled
    assert settings(OTEL_TRACES_EXPORTER="otlp").exporters == ("otlp",)
    assert settings(OTEL_TRACES_EXPORTER="OTLP, console,otlp").exporters == ("otlp", "console")


def test_defaults_and_the_standard_variables() -> None:
    on = settings(OTEL_TRACES_EXPORTER="otlp")
    assert on.service_name == "fleetward-test"
    assert on.sampler == "parentbased_always_on"
    assert on.otlp_endpoint is None  # the exporter's own default
    named = settings(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_SERVICE_NAME="actions-eu-1",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.25",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317",
    )
    assert named.service_name == "actions-eu-1"
    assert named.sampler_ratio == 0.25
    assert named.otlp_endpoint == "http://collector:4317"
    traces_only = settings(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://traces:4317",
    )
    assert traces_only.otlp_endpoint == "http://traces:4317"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "sometimes"}, "SAMPLER"),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "1.5",
            },
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_a_malformed_variable_stops_the_start(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        settings(**env)


def test_both_services_read_them_with_their_own_service_name() -> None:
    base = {"OTEL_TRACES_EXPORTER": "console", "FLEETWARD_SERVICE_JWT_SECRET": "s" * 32}
    actions = ActionSettings.from_env({**base, "DATABASE_URL": "postgresql://x/y"})
    policy = PolicySettings.from_env(base)
    assert actions.tracing.service_name == "fleetward-actions"
    assert policy.tracing.service_name == "fleetward-policy"
    assert actions.tracing.enabled
    assert policy.tracing.enabled
    assert not ActionSettings.from_env({"DATABASE_URL": "postgresql://x/y"}).tracing.enabled


def test_start_builds_what_the_settings_ask_for_and_shutdown_undoes_it() -> None:
    assert tracing.start(settings()) is tracing.OFF
    started = tracing.start(
        TracingSettings(
            exporters=("console",),
            service_name="fleetward-test",
            sampler="parentbased_traceidratio",
            sampler_ratio=0.5,
        )
    )
    try:
        provider = started.provider
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "fleetward-test"
        assert "TraceIdRatioBased{0.5}" in provider.sampler.get_description()
        assert asyncpg_instrumented()
        with tracing.span("started") as span:
            assert span is not None
            assert tracing.current_ids() is not None
    finally:
        started.shutdown()
    assert not asyncpg_instrumented()
    with tracing.span("after") as span:
        assert span is None
