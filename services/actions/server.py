"""Build the action service's gRPC server (unstarted) with its pool and policy client."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from fleetward.actions.v1 import actions_pb2
from grpc_health.v1 import health

from services.actions.auth import Authenticator
from services.actions.checkpoints.signing import load_private_key_file
from services.actions.checkpoints.writer import Checkpointer
from services.actions.db import DATABASE_ERRORS, create_pool
from services.actions.denials import DenialLimit
from services.actions.events.notifier import EventNotifier
from services.actions.events.watch import StreamLimits, Watcher
from services.actions.executor import Executor
from services.actions.metrics import BACKGROUND_RUNS, track_pool
from services.actions.permissions import Permissions
from services.actions.pipeline import Pipeline
from services.actions.policy_gateway import PolicyGateway
from services.actions.reads import Reads
from services.actions.recovery import recover_orphans
from services.actions.rollback import RollbackRunner
from services.actions.scheduler import resume_expired
from services.actions.servicer import ActionServicer
from services.actions.settings import ActionSettings
from services.common import logs, tracing
from services.common import server as common
from services.common.accesslog import log_rpc
from services.common.metrics import record_rpc, start_metrics_server
from services.common.registration import add_servicer
from services.common.tasks import PeriodicJob, TaskSet

log = logging.getLogger(__name__)

SERVICE = actions_pb2.DESCRIPTOR.services_by_name["ActionService"]
SERVICE_NAME = SERVICE.full_name
SHUTDOWN_GRACE_S = 10.0


@dataclass
class ActionServer:
    """The server, its health servicer, the port it bound and what it owns."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    pool: asyncpg.Pool
    watch_pool: asyncpg.Pool
    policy: PolicyGateway
    tasks: TaskSet
    notifier: EventNotifier
    watcher: Watcher
    jobs: list[PeriodicJob] = field(default_factory=list)
    checkpointer: Checkpointer | None = None

    async def start(self) -> None:
        """Start serving, the event listener, crash recovery (docs/architecture.md §5.7) and
        the scheduler (docs/architecture.md §5.8).
        """
        await self.notifier.start(wait=False)
        await self.server.start()
        for job in self.jobs:
            job.start()
        await common.set_serving(self.health, [SERVICE_NAME], True)

    async def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Graceful shutdown (docs/architecture.md §9).

        NOT_SERVING; end watch streams (status OK: clients resume from their last seq);
        stop accepting RPCs and give in-flight ones ``grace`` seconds; let background
        jobs and shielded actions finish; close the policy channel and the pool.
        """
        await common.set_serving(self.health, [SERVICE_NAME], False)
        self.watcher.close()
        await self.server.stop(grace)
        await self.notifier.close()
        for job in self.jobs:
            await job.stop()
        await self.tasks.drain()
        if self.checkpointer is not None:
            await self.checkpointer.final()
        await self.policy.close()
        await self.watch_pool.close()
        await self.pool.close()


def _policy_credentials(settings: ActionSettings) -> grpc.ChannelCredentials | None:
    """TLS toward the policy service (with a client certificate for mTLS), or None."""
    if settings.policy_tls_ca is None and settings.policy_tls_cert is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=settings.policy_tls_ca.read_bytes() if settings.policy_tls_ca else None,
        private_key=settings.policy_tls_key.read_bytes() if settings.policy_tls_key else None,
        certificate_chain=(
            settings.policy_tls_cert.read_bytes() if settings.policy_tls_cert else None
        ),
    )


async def build_server(
    settings: ActionSettings, traced: tracing.Tracing = tracing.OFF
) -> ActionServer:
    """Create the server with health, reflection and the ActionService bound to its address.

    ``traced`` (installed, :func:`services.common.tracing.start`) adds its interceptors to
    the server and to the policy channel; off, there are none.
    """
    pool, watch_pool = await _pools(settings)
    policy = PolicyGateway(
        settings.policy_target,
        settings.service_jwt_secret,
        timeout_ms=settings.policy_timeout_ms,
        credentials=_policy_credentials(settings),
        interceptors=traced.client_interceptors(),
    )
    track_pool(pool)
    track_pool(watch_pool, "watch")
    tasks = TaskSet()
    notifier = EventNotifier(settings.database_url, poll_interval_s=settings.watch_poll_interval_s)
    watcher = Watcher(watch_pool, policy, notifier, limits=_stream_limits(settings))
    servicer = _servicer(settings, pool, policy, tasks, watcher)
    server = common.new_server(
        max_concurrent_streams=settings.max_concurrent_streams,
        interceptors=traced.server_interceptors(),
    )
    observers = (record_rpc, log_rpc, *traced.observers())
    add_servicer(server, servicer, SERVICE, observers)
    health_servicer = common.add_health_and_reflection(server, [SERVICE_NAME], observers)
    port = common.bind(server, settings.listen_addr, settings.tls)
    checkpointer = _checkpointer(settings, pool)
    return ActionServer(
        server,
        health_servicer,
        port,
        pool,
        watch_pool,
        policy,
        tasks,
        notifier,
        watcher,
        _jobs(settings, Pipeline(pool, policy, tasks), checkpointer),
        checkpointer,
    )


async def _pools(settings: ActionSettings) -> tuple[asyncpg.Pool, asyncpg.Pool]:
    """The main pool, and the watchers' own few connections to read the event table."""
    pool = await create_pool(
        settings.database_url,
        max_size=settings.pool_size,
        acquire_timeout_s=settings.pool_acquire_timeout_s,
    )
    watch_pool = await create_pool(
        settings.database_url,
        max_size=settings.watch_pool_size,
        acquire_timeout_s=settings.pool_acquire_timeout_s,
    )
    return pool, watch_pool


def _stream_limits(settings: ActionSettings) -> StreamLimits:
    """How many WatchActions streams may be open and read history at once."""
    return StreamLimits(
        settings.watch_max_streams,
        settings.watch_max_streams_per_subject,
        settings.watch_replay_rate,
        settings.watch_replays_per_subject,
    )


def _servicer(
    settings: ActionSettings,
    pool: asyncpg.Pool,
    policy: PolicyGateway,
    tasks: TaskSet,
    watcher: Watcher,
) -> ActionServicer:
    """The ActionService's handlers: auth, Execute, Rollback, reads, watch, permissions."""
    denials = DenialLimit(per_window=settings.denials_per_minute, window_s=60)
    return ActionServicer(
        Authenticator.from_settings(settings),
        Executor(pool, policy, tasks, denials),
        RollbackRunner(pool, policy, tasks, denials),
        Reads(pool, policy),
        watcher,
        Permissions(pool, policy),
    )


def _jobs(
    settings: ActionSettings, pipeline: Pipeline, checkpointer: Checkpointer | None
) -> list[PeriodicJob]:
    """Crash recovery, expiring pauses (recorded through ``pipeline``) and, when
    configured, the audit checkpoints.
    """
    jobs = [
        _job("recovery", lambda: recover_orphans(pipeline.pool), settings.recovery_interval_s),
        _job("scheduler", lambda: resume_expired(pipeline), settings.scheduler_interval_s),
    ]
    if checkpointer is not None:
        jobs.append(_job("checkpoints", checkpointer.write_due, settings.checkpoint_interval_s))
    return jobs


def _job(name: str, work: Callable[[], Awaitable[Any]], interval_s: float) -> PeriodicJob:
    return PeriodicJob(
        name, work, interval_s, runs=BACKGROUND_RUNS, database_errors=DATABASE_ERRORS
    )


def _checkpointer(settings: ActionSettings, pool: asyncpg.Pool) -> Checkpointer | None:
    """The checkpoint writer, or None (with a warning) when checkpoints are not configured."""
    if settings.checkpoint_dir is None or settings.checkpoint_key_file is None:
        log.warning(
            "audit checkpoints are off: set FLEETWARD_CHECKPOINT_DIR and "
            "FLEETWARD_CHECKPOINT_KEY_FILE (docs/architecture.md, Audit integrity)"
        )
        return None
    key = load_private_key_file(settings.checkpoint_key_file)
    return Checkpointer(pool, settings.checkpoint_dir, key)


async def serve(settings: ActionSettings) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    logs.configure("actions", settings.log_level)
    traced = tracing.start(settings.tracing)
    try:
        built = await build_server(settings, traced)
        start_metrics_server(settings.metrics_port, settings.metrics_addr)
        await built.start()
        log.info("action service listening on port %d", built.port)
        await common.wait_for_termination_signal()
        log.info("shutting down", extra={"event": "shutdown"})
        await built.stop(settings.shutdown_grace_s)
        log.info("stopped", extra={"event": "stopped"})
    finally:
        traced.shutdown()  # flushes the spans still queued
