"""``python -m bench.tracing_cost [CALLS]``: what tracing costs one sequential Execute.

Runs both services in this process four ways, interleaved over three rounds: tracing off;
on but every request sampled out (the interceptors and the asyncpg wrapper alone); every
span recorded and handed to a batching processor whose exporter drops it (span creation,
no export); every span exported over OTLP to ``bench.otlp_sink`` (what a deployment pays).
Prints the median Execute p50 and the process CPU per Execute (client and both services
share the process, so compare the four, not with ``make bench``). Needs DATABASE_URL (a
scratch database is created and dropped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from bench import policygen, procs, scenarios, seed
from services.actions.server import build_server as build_action_server
from services.actions.settings import ActionSettings
from services.common.tokens import mint_user_token
from services.common.tracing import OFF, Tracing
from services.policy.server import build_server as build_policy_server
from services.policy.settings import PolicySettings

WAYS = ("off", "sampled out", "recorded, dropped", "exported (OTLP)")


class _Drop(SpanExporter):
    """Takes every batch and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _tracing(way: str, sink: str) -> Tracing:
    if way == "off":
        return OFF
    provider = TracerProvider(sampler=ALWAYS_OFF if way == "sampled out" else ALWAYS_ON)
    if way == "recorded, dropped":
        provider.add_span_processor(BatchSpanProcessor(_Drop()))
    elif way == "exported (OTLP)":
        exporter = OTLPSpanExporter(endpoint=f"http://{sink}")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, owned=True).install()


async def _measure(
    dsn: str, workspace: uuid.UUID, policy_dir: Path, traced: Tracing, calls: int
) -> tuple[float, float]:
    """(Execute p50 ms, process CPU ms per Execute) with both services traced as given."""
    jwt_secret, service_secret = secrets.token_hex(32), secrets.token_hex(32)
    policy = await build_policy_server(
        PolicySettings(
            listen_addr="127.0.0.1:0",
            policy_dir=policy_dir,
            service_jwt_secret=service_secret,
            decision_log="off",
            watch=False,
        ),
        traced,
    )
    await policy.start()
    actions = await build_action_server(
        ActionSettings(
            database_url=dsn,
            listen_addr="127.0.0.1:0",
            policy_target=f"127.0.0.1:{policy.port}",
            jwt_secret=jwt_secret,
            service_jwt_secret=service_secret,
        ),
        traced,
    )
    await actions.start()
    try:
        target = f"127.0.0.1:{actions.port}"
        token = mint_user_token(jwt_secret, "bench-user")
        await scenarios.execute_latencies_ms(target, token, workspace, 64, 50)
        begun = time.process_time()
        times = await scenarios.execute_latencies_ms(target, token, workspace, 64, calls)
        # execute_latencies_ms warms up with 20 untimed calls
        cpu_ms = (time.process_time() - begun) / (calls + 20) * 1000
    finally:
        await actions.stop(0.5)
        await policy.stop(0.5)
    return statistics.median(times), cpu_ms


async def run(calls: int) -> None:
    """Measure and print the four ways."""
    work = Path(tempfile.mkdtemp(prefix="fleetward-tracing-cost-"))
    policy = policygen.generate(rules=50, links=60, seed=11)
    policy = dataclasses.replace(policy, lines=(*policy.lines, "g, bench-user, admin, *"))
    policy_dir = policygen.write_policy_dir(work / "policy", policy)
    found: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    async with procs.scratch_database(os.environ["DATABASE_URL"]) as dsn:
        workspace = seed.workspace_ids(1, tag=3)[0]
        conn = await asyncpg.connect(dsn)
        try:
            await seed.seed_agents(conn, [workspace], 64, 4)
        finally:
            await conn.close()
        with procs.otlp_sink(True) as sink:
            for _ in range(3):
                for way in WAYS:
                    traced = _tracing(way, sink.target)
                    try:
                        found[way].append(await _measure(dsn, workspace, policy_dir, traced, calls))
                    finally:
                        traced.shutdown()
    print(f"sequential Execute, {calls} calls x 3 rounds, in one process (medians):")
    for way, runs in found.items():
        p50 = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"  {way:<18} p50 {p50:6.2f} ms   CPU per Execute {cpu:6.2f} ms")
    print(f"  the sink received {sink.received}")


if __name__ == "__main__":
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL is unset (make bench sets it; or run under services.dev with-db)")
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
