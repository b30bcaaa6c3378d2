"""TLS and mTLS from ClientConfig (and FLEETWARD_TLS_CA in the CLI) against the real services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fleetward.client import TlsConfig, Unavailable

from services.common.server import ServerTls
from services.policy.server import build_server as build_policy_server
from services.policy.settings import PolicySettings
from tests.client.cli_runner import fleetward
from tests.client.servers import actions_client, policy_client
from tests.conftest import Secrets
from tests.servers import running_action_server, write_test_policy
from tests.tls import TlsFiles, make_tls_files


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (svc:client-tests)."""
    return make_tls_files(tmp_path_factory.mktemp("client-pki"), client_name="svc:client-tests")


@pytest.fixture(scope="module")
async def tls_action_target(
    database_dsn: str, client_policy_target: str, dev_secrets: Secrets, pki: TlsFiles
) -> AsyncIterator[str]:
    """The real action service serving TLS."""
    tls = ServerTls(pki.server_cert, pki.server_key)
    async with running_action_server(
        database_dsn, client_policy_target, dev_secrets, tls=tls
    ) as target:
        yield target


@contextlib.asynccontextmanager
async def mtls_policy_server(
    policy_dir: Path, secrets: Secrets, pki: TlsFiles
) -> AsyncIterator[str]:
    """The real policy service requiring client certificates from ``pki``'s CA."""
    settings = PolicySettings(
        listen_addr="127.0.0.1:0",
        policy_dir=policy_dir,
        service_jwt_secret=secrets.service_jwt_secret,
        decision_log="off",
        watch=False,
        tls=ServerTls(pki.server_cert, pki.server_key, pki.ca_cert),
    )
    built = await build_policy_server(settings)
    assert await built.start()
    try:
        yield f"127.0.0.1:{built.port}"
    finally:
        await built.stop(grace=0.5)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_tls_with_a_private_ca(
    tls_action_target: str, dev_secrets: Secrets, pki: TlsFiles, sync: bool
) -> None:
    token = dev_secrets.user_token("carol")
    secure = actions_client(
        tls_action_target, token, sync=sync, tls=TlsConfig.from_files(ca=pki.ca_cert)
    )
    plain = actions_client(tls_action_target, token, sync=sync, default_deadline=1.0)
    try:
        types = await secure.call("list_action_types")
        assert "pause_agent" in {t.name for t in types}
        with pytest.raises(Unavailable):
            await plain.call("list_action_types")
    finally:
        await secure.close()
        await plain.close()


async def test_cli_uses_fleetward_tls_ca(
    tls_action_target: str, dev_secrets: Secrets, pki: TlsFiles
) -> None:
    env = {
        "FLEETWARD_TARGET": tls_action_target,
        "FLEETWARD_TOKEN": dev_secrets.user_token("carol"),
        "FLEETWARD_TLS_CA": str(pki.ca_cert),
    }
    run = await fleetward("actions", "types", "--json", env=env)
    assert run.code == 0, run.stderr
    assert "restart_agent" in {t["name"] for t in run.json()}


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_client_certificate_authenticates_to_the_policy_service(
    tmp_path: Path, dev_secrets: Secrets, pki: TlsFiles, sync: bool
) -> None:
    async with mtls_policy_server(write_test_policy(tmp_path), dev_secrets, pki) as target:
        tls = TlsConfig.from_files(ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key)
        client = policy_client(target, None, sync=sync, tls=tls)  # the certificate is the caller
        try:
            info = await client.call("get_policy_info")
            assert info.policy_version
        finally:
            await client.close()
