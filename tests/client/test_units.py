"""Pure pieces: scopes and params, config from the environment, rendering, the spinner."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from pathlib import Path

import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import (
    AsyncActionsClient,
    ClientConfig,
    PauseAgent,
    RestartAgent,
    RetryPolicy,
    Scope,
    SetBudget,
    Unavailable,
    action_result,
)
from fleetward.client import errors as client_errors
from fleetward.client._core import action_status, agent_status, call_metadata, execute_request
from fleetward.client.cli import exit_codes
from fleetward.client.cli.render import (
    action_block,
    changes_table,
    fields,
    policy_info_block,
    table,
)
from fleetward.client.cli.spinner import Spinner
from fleetward.policy.v1 import policy_pb2
from google.protobuf import struct_pb2


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("agent", Scope.AGENT),
        ("Department", Scope.DEPARTMENT),
        (Scope.FLEET, Scope.FLEET),
        (actions_pb2.SCOPE_DEPARTMENT, Scope.DEPARTMENT),
    ],
)
def test_scope_accepts_words_and_enums(given: object, expected: Scope) -> None:
    assert Scope.of(given) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["galaxy", actions_pb2.SCOPE_UNSPECIFIED])
def test_scope_rejects_anything_else(bad: object) -> None:
    with pytest.raises(ValueError, match="scope must be"):
        Scope.of(bad)  # type: ignore[arg-type]


def _request(params: object) -> actions_pb2.ExecuteRequest:
    return execute_request(
        workspace_id="w",
        scope="agent",
        target_id="a-1",
        reason="why not",
        params=params,  # type: ignore[arg-type]
        request_id=None,
        validate_only=False,
    )


def test_params_pick_the_oneof_and_only_set_what_was_given() -> None:
    pause = _request(PauseAgent())
    assert pause.WhichOneof("params") == "pause_agent"
    assert not pause.pause_agent.HasField("duration_minutes")
    clear = _request(SetBudget(clear=True))
    assert clear.WhichOneof("params") == "set_budget"
    assert clear.set_budget.clear
    assert not clear.set_budget.HasField("monthly_limit_cents")
    zero = _request(SetBudget(monthly_limit_cents=0))
    assert zero.set_budget.HasField("monthly_limit_cents")
    assert _request(RestartAgent()).WhichOneof("params") == "restart_agent"


def test_status_filters_accept_names() -> None:
    assert action_status("completed") == actions_pb2.ACTION_STATUS_COMPLETED
    assert action_status("ACTION_STATUS_DENIED") == actions_pb2.ACTION_STATUS_DENIED
    assert action_status(None) == actions_pb2.ACTION_STATUS_UNSPECIFIED
    assert agent_status("paused") == actions_pb2.AGENT_STATUS_PAUSED


def test_config_from_env(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    env = {
        "FLEETWARD_TARGET": "actions:443",
        "FLEETWARD_POLICY_TARGET": "policy:443",
        "FLEETWARD_TOKEN": "t0k",
        "FLEETWARD_TLS_CA": str(ca),
    }
    config = ClientConfig.from_env(env)
    assert config.target == "actions:443"
    assert config.bearer_token() == "t0k"
    assert config.tls is not None
    assert config.tls.root_certificates == ca.read_bytes()
    assert config.default_deadline == 5.0
    policy = ClientConfig.from_env(env, target_variable="FLEETWARD_POLICY_TARGET")
    assert policy.target == "policy:443"
    assert ClientConfig.from_env({}).tls is None


def test_token_provider_and_metadata() -> None:
    config = ClientConfig(token=lambda: "fresh")
    assert call_metadata(config) == (("authorization", "Bearer fresh"),)
    assert call_metadata(ClientConfig()) == ()


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"jitter": 1.5}, {"multiplier": 0.5}, {"initial_backoff": -1}]
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_action_result_decodes_the_struct() -> None:
    result = struct_pb2.Struct()
    result.update(
        {
            "count": 2,
            "truncated": False,
            "agents": [
                {"agent_id": "a-1", "previous_status": "active", "new_status": "paused"},
                {
                    "agent_id": "a-2",
                    "previous_status": "active",
                    "new_status": "paused",
                    "resume_at": "2026-01-01T00:30:00Z",
                },
            ],
        }
    )
    decoded = action_result(actions_pb2.Action(result=result))
    assert decoded.count == 2
    assert [(c.agent_id, c.resume_at) for c in decoded.agents] == [
        ("a-1", None),
        ("a-2", "2026-01-01T00:30:00Z"),
    ]
    assert action_result(actions_pb2.Action()).count == 0


def test_table_aligns_columns() -> None:
    text = table(("ID", "STATUS"), [("a", "paused"), ("long-id", True)])
    assert text.splitlines() == ["ID       STATUS", "a        paused", "long-id  yes"]
    assert fields([("a", "x"), ("empty", ""), ("longer", 3)]) == "a       x\nlonger  3"


def test_an_action_shows_its_trace_id_only_when_it_has_one() -> None:
    traced = actions_pb2.Action(action_id="a-1", trace_id="0af7651916cd43dd8448eb211c80319c")
    assert "trace id       0af7651916cd43dd8448eb211c80319c" in action_block(traced).splitlines()
    assert "trace id" not in action_block(actions_pb2.Action(action_id="a-1"))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (client_errors.InvalidArgument("bad"), exit_codes.USAGE),
        (client_errors.Unauthenticated("who"), exit_codes.UNAUTHENTICATED),
        (client_errors.PermissionDenied("no"), exit_codes.PERMISSION_DENIED),
        (client_errors.NotFound("gone"), exit_codes.NOT_FOUND),
        (client_errors.FailedPrecondition("state"), exit_codes.CONFLICT),
        (client_errors.AlreadyExists("key"), exit_codes.CONFLICT),
        (client_errors.Aborted("busy"), exit_codes.CONFLICT),
        (client_errors.Unavailable("down"), exit_codes.UNAVAILABLE),
        (client_errors.DeadlineExceeded("slow"), exit_codes.UNAVAILABLE),
        (client_errors.Internal("boom"), exit_codes.FAILURE),
        (client_errors.Unimplemented("later"), exit_codes.FAILURE),
    ],
)
def test_exit_code_by_error_class(error: client_errors.FleetwardError, code: int) -> None:
    assert exit_codes.for_error(error) == code


def test_error_defaults_to_its_class_code() -> None:
    error = client_errors.NotFound("no such agent")
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.action_id is None
    assert str(error) == "NOT_FOUND: no such agent"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_animates_only_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    terminal = _Terminal()
    with Spinner("working", stream=terminal) as spinner:
        while "working" not in terminal.getvalue():
            time.sleep(0.01)
        spinner.print("a result line")
    assert terminal.getvalue().endswith("\r\x1b[K")  # cleared on exit
    assert capsys.readouterr().out == "a result line\n"

    pipe = io.StringIO()
    with Spinner("working", stream=pipe) as quiet:
        quiet.print("plain")
    assert pipe.getvalue() == ""
    assert capsys.readouterr().out == "plain\n"


def test_changes_table_shows_agents_and_budgets() -> None:
    result = struct_pb2.Struct()
    result.update(
        {
            "count": 2,
            "agents": [{"agent_id": "a-1", "previous_status": "paused", "new_status": "active"}],
            "budgets": [
                {
                    "scope": "department",
                    "target_id": "support",
                    "previous_monthly_limit_cents": None,
                    "new_monthly_limit_cents": 5000,
                }
            ],
        }
    )
    text = changes_table(actions_pb2.Action(result=result))
    assert "a-1    paused → active" in text
    assert "department support  none → 5000" in text


def test_async_client_built_outside_a_loop_works_inside_one() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AsyncActionsClient(ClientConfig(target=f"127.0.0.1:{port}", default_deadline=0.5))

    async def call() -> None:
        try:
            await client.list_action_types()
        finally:
            await client.close()

    with pytest.raises(Unavailable):  # not "attached to a different loop"
        asyncio.run(call())


def test_policy_info_lists_the_load_warnings_escaped() -> None:
    info = policy_pb2.GetPolicyInfoResponse(
        policy_version="abc123",
        warnings=[
            "policy.csv:37: warning: role 'operater' is bound but grants nothing",
            "policy.csv:40: warning: \x1b[31mred\x1b[0m",
        ],
    )
    lines = policy_info_block(info).splitlines()
    assert lines[0].startswith("policy")
    warned = [line for line in lines if line.startswith("warning: ")]
    assert len(warned) == 2
    assert (
        warned[0] == "warning: policy.csv:37: warning: role 'operater' is bound but grants nothing"
    )
    assert "\x1b" not in warned[1]
