"""TLS end to end: a TLS action service whose policy connection is mTLS (plus its token)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from services.actions.settings import ActionSettings
from services.common.server import ServerTls
from services.common.settings import SettingsError
from services.policy.server import build_server as build_policy_server
from services.policy.settings import PolicySettings
from tests.actions.helpers import Api, details
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server_handle
from tests.tls import TlsFiles, make_tls_files


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path)


@pytest.fixture
async def mtls_policy_target(
    tls_files: TlsFiles, events_policy_dir: Path, dev_secrets: Secrets
) -> AsyncIterator[str]:
    """A policy service that requires client certificates signed by the test CA."""
    built = await build_policy_server(
        PolicySettings(
            listen_addr="127.0.0.1:0",
            policy_dir=events_policy_dir,
            service_jwt_secret=dev_secrets.service_jwt_secret,
            tls=ServerTls(tls_files.server_cert, tls_files.server_key, tls_files.ca_cert),
            decision_log="off",
            watch=False,
        )
    )
    assert await built.start()
    try:
        yield f"127.0.0.1:{built.port}"
    finally:
        await built.stop(grace=0.5)


async def test_execute_through_tls_servers_with_an_mtls_policy_connection(
    tls_files: TlsFiles,
    mtls_policy_target: str,
    database_dsn: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
) -> None:
    ws = await new_workspace()
    async with running_action_server_handle(
        database_dsn,
        mtls_policy_target,
        dev_secrets,
        tls=ServerTls(tls_files.server_cert, tls_files.server_key),
        policy_tls_ca=tls_files.ca_cert,
        policy_tls_cert=tls_files.client_cert,
        policy_tls_key=tls_files.client_key,
    ) as built:
        creds = grpc.ssl_channel_credentials(root_certificates=tls_files.ca_cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{built.port}", creds) as channel:
            action = await Api(channel, dev_secrets).execute(
                "bob", ws.id, "pause_agent", target="eng-code-1"
            )
    assert action.policy_version


async def test_policy_connection_without_client_certificate_is_policy_unavailable(
    tls_files: TlsFiles,
    mtls_policy_target: str,
    database_dsn: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
) -> None:
    ws = await new_workspace()
    async with (
        running_action_server_handle(
            database_dsn, mtls_policy_target, dev_secrets, policy_tls_ca=tls_files.ca_cert
        ) as built,
        grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await Api(channel, dev_secrets).execute(
                "bob", ws.id, "pause_agent", target="eng-code-1"
            )
    got = details(info.value)
    assert (got.code, got.reason) == (grpc.StatusCode.UNAVAILABLE, "POLICY_UNAVAILABLE")


def test_policy_client_certificate_needs_its_key() -> None:
    env = {"DATABASE_URL": "postgresql://x/y", "FLEETWARD_POLICY_TLS_CERT": "client.pem"}
    with pytest.raises(SettingsError, match="FLEETWARD_POLICY_TLS_KEY"):
        ActionSettings.from_env(env)
    env["FLEETWARD_POLICY_TLS_KEY"] = "client.key"
    settings = ActionSettings.from_env(env)
    assert settings.policy_tls_cert == Path("client.pem")
    assert settings.policy_tls_key == Path("client.key")
