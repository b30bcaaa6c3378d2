"""Secrets and tokens never reach a log (docs/architecture.md §9): in-process servers and a
service process.

Besides these tests, the reliability conftest scans every log line of the whole run at
its end (in-process at DEBUG and every service process's log file) and fails the run on
any secret or token; the summary table shows the count.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc

from tests.actions.helpers import Api, execute_request
from tests.conftest import Secrets
from tests.events.processes import ServiceProcess, action_env, action_process
from tests.reliability import counters
from tests.reliability.harness import LOG_FILES, create_workspace, leaks
from tests.security.test_tokens import forged_tokens

# The forged HS512 token reuses the (short for SHA-512) HS256 test secret on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


async def traffic(stub: actions_pb2_grpc.ActionServiceAsyncStub, secrets: Secrets, ws: str) -> None:
    """Good and forged tokens, and tokens and secrets inside request fields."""
    tokens = [secrets.user_token("alice"), secrets.service_token(), secrets.user_token("mallory")]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens += list(forged_tokens(secrets, key).values())
    for token in tokens:
        for reason in (f"see {token}", secrets.jwt_secret, secrets.service_jwt_secret):
            request = execute_request(ws, "pause_agent", target="eng-code-1", reason=reason)
            for metadata in (
                (("authorization", f"Bearer {token}"),),
                (("authorization", f"Basic {token}"),),
            ):
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Execute(request, metadata=metadata, timeout=5)
                counters.record("requests")
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.ListActions(
                actions_pb2.ListActionsRequest(workspace_id=ws, page_token=token),
                metadata=(("authorization", f"Bearer {secrets.user_token('bob')}"),),
                timeout=5,
            )


@pytest.fixture
async def process(
    tmp_path: Path, database_dsn: str, rel_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[ServiceProcess]:
    """An action service process logging at DEBUG into a file the suite scans."""
    proc = action_process(tmp_path, "logs")
    LOG_FILES.append(proc.log)
    env = action_env(
        proc, database_dsn, rel_policy_target, dev_secrets, FLEETWARD_LOG_LEVEL="DEBUG"
    )
    await proc.start(env)
    yield proc
    await proc.stop()


async def test_no_secret_or_token_in_the_logs_of_in_process_servers(
    rel_api: Api, pool: asyncpg.Pool, dev_secrets: Secrets
) -> None:
    ws = await create_workspace(pool)
    await traffic(rel_api.stub, dev_secrets, str(ws))
    assert not leaks()


async def test_no_secret_or_token_in_the_log_of_a_service_process(
    process: ServiceProcess, pool: asyncpg.Pool, dev_secrets: Secrets
) -> None:
    ws = await create_workspace(pool)
    async with grpc.aio.insecure_channel(process.target) as channel:
        await traffic(actions_pb2_grpc.ActionServiceStub(channel), dev_secrets, str(ws))
    await process.stop()
    lines = process.log.read_text().splitlines()
    assert sum("ActionService/Execute" in line for line in lines) >= 10, "no access log lines"
    assert not leaks()
