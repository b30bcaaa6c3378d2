"""The ``OTEL_*`` variables tracing reads (docs/architecture.md §9), checked at start:
which exporters, the service name, the sampler and its ratio, the OTLP endpoint (every
variable: docs/configuration.md). Off unless ``OTEL_TRACES_EXPORTER`` names an exporter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import SettingsError, env_str

EXPORTERS = ("otlp", "console")
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)


@dataclass(frozen=True)
class TracingSettings:
    """What the ``OTEL_*`` variables ask for (every variable: docs/configuration.md)."""

    exporters: tuple[str, ...] = ()  # empty: tracing is off
    service_name: str = ""
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0
    otlp_endpoint: str | None = None  # None: the exporter's default (localhost:4317)

    @property
    def enabled(self) -> bool:
        """Whether anything is traced at all."""
        return bool(self.exporters)

    @classmethod
    def from_env(cls, env: Mapping[str, str], default_service_name: str) -> TracingSettings:
        """Read and check the variables; raise SettingsError naming what is wrong."""
        service_name = env_str(env, "OTEL_SERVICE_NAME", default_service_name)
        if env_str(env, "OTEL_SDK_DISABLED").strip().lower() == "true":
            return cls(service_name=service_name)
        raw = env_str(env, "OTEL_TRACES_EXPORTER", "none")
        names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
        if names == ("none",):
            return cls(service_name=service_name)
        if not names or any(name not in EXPORTERS for name in names):
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER must be none, otlp, console or otlp,console; got {raw!r}"
            )
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = env_str(env, name, "grpc").strip().lower()
            if protocol != "grpc":
                raise SettingsError(f"{name} must be grpc (the only OTLP exporter installed)")
        sampler = env_str(env, "OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
        if sampler not in SAMPLERS:
            raise SettingsError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(SAMPLERS)}")
        return cls(
            exporters=names,
            service_name=service_name,
            sampler=sampler,
            sampler_ratio=_ratio(env) if sampler.endswith("traceidratio") else 1.0,
            otlp_endpoint=env_str(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or env_str(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
            or None,
        )


def _ratio(env: Mapping[str, str]) -> float:
    raw = env_str(env, "OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, got {raw!r}")
    return ratio
