"""Hot reload: good edits swap the policy, bad ones keep the last good one serving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import prometheus_client
import pytest
from fleetward.policy.v1 import policy_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.policy.conftest import AGENT, DEMO_WS, StartPolicy
from tests.policy.test_invalid_requests import decode

FRANK = f"\ng, frank, operator, {DEMO_WS}\n"


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def _reloads(result: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "fleetward_policy_reloads_total", {"result": result}
    )
    return value or 0.0


async def test_good_edit_changes_version_and_decisions(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    async with start_policy(policy_copy) as running:
        before = await running.info()
        denied = await running.check("frank", "actions:pause_agent", AGENT)
        assert denied.reason == policy_pb2.DECISION_REASON_UNKNOWN_WORKSPACE
        successes = _reloads("success")
        _append(policy_copy / "policy.csv", FRANK)
        assert await running.built.reloader.reload()
        after = await running.info()
        assert after.policy_version != before.policy_version
        assert after.role_link_count == before.role_link_count + 1
        assert after.last_reload_error == ""
        assert after.loaded_at.ToDatetime() >= before.loaded_at.ToDatetime()
        allowed = await running.check("frank", "actions:pause_agent", AGENT)
        assert allowed.allowed
        assert allowed.policy_version == after.policy_version
        assert _reloads("success") == successes + 1
        current = prometheus_client.REGISTRY.get_sample_value(
            "fleetward_policy_info", {"policy_version": after.policy_version}
        )
        assert current == 1.0


def _break_matcher(d: Path) -> None:
    _replace(d / "model.conf", "globMatch(r.obj, p.obj)", "globMatch(r.obj, p.obj) && nope(r.obj)")


BREAKAGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "unknown ptype": (
        lambda d: _append(d / "policy.csv", "x, viewer, *, fleet/**, actions:read, allow\n"),
        "unknown ptype 'x'",
    ),
    "effect typo": (
        lambda d: _append(d / "policy.csv", "p, viewer, *, fleet/**, actions:read, alow\n"),
        "effect 'alow' is not allow or deny",
    ),
    "wrong field count": (
        lambda d: _append(d / "policy.csv", "p, viewer, *, fleet/**, actions:read\n"),
        "p line has 4 fields",
    ),
    "unknown action": (
        lambda d: _append(d / "policy.csv", "p, viewer, *, fleet/**, actions:launch, allow\n"),
        "unknown action 'actions:launch'",
    ),
    "missing model section": (
        lambda d: _replace(d / "model.conf", "[policy_effect]", "[policy_effekt]"),
        "missing section [policy_effect]",
    ),
    "matcher calls an unknown function": (_break_matcher, "the matcher fails"),
    "policy test fails": (
        lambda d: _replace(d / "policy.csv", f"g, bob, operator, {DEMO_WS}", ""),
        "policy tests failed",
    ),
    "invalid test YAML": (
        lambda d: _append(d / "tests" / "demo.yaml", "  - {subject: [unclosed\n"),
        "invalid YAML",
    ),
    "missing policy file": (lambda d: (d / "policy.csv").unlink(), "file not found"),
    "not UTF-8": (lambda d: (d / "policy.csv").write_bytes(b"p, \xff\xfe\n"), "not UTF-8"),
    "role cycle": (
        lambda d: _append(d / "policy.csv", "g, viewer, operator, *\n"),
        "role cycle",
    ),
}


@pytest.mark.parametrize("kind", list(BREAKAGES))
async def test_broken_files_keep_the_last_good_policy(
    start_policy: StartPolicy, policy_copy: Path, kind: str
) -> None:
    breakage, expected_error = BREAKAGES[kind]
    async with start_policy(policy_copy) as running:
        before = await running.info()
        failures = _reloads("failure")
        breakage(policy_copy)
        assert not await running.built.reloader.reload()
        info = await running.info()
        assert info.policy_version == before.policy_version
        assert info.loaded_at == before.loaded_at
        assert expected_error in info.last_reload_error
        assert info.last_reload_at.ToDatetime() >= before.loaded_at.ToDatetime()
        assert _reloads("failure") == failures + 1
        # Decisions are unchanged: the old policy still serves.
        bob = await running.check("bob", "actions:pause_agent", AGENT)
        assert bob.allowed
        assert bob.policy_version == before.policy_version
        carol = await running.check("carol", "actions:pause_agent", AGENT)
        assert not carol.allowed


async def test_error_clears_after_a_good_reload(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    async with start_policy(policy_copy) as running:
        _append(policy_copy / "policy.csv", "p, viewer, *, fleet/**, actions:read, alow\n")
        assert not await running.built.reloader.reload()
        assert (await running.info()).last_reload_error
        _replace(policy_copy / "policy.csv", "alow", "allow")
        assert await running.built.reloader.reload()
        assert (await running.info()).last_reload_error == ""


async def test_concurrent_checks_during_50_reloads_never_see_a_half_loaded_policy(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    policy = policy_copy / "policy.csv"
    original = policy.read_text()
    async with start_policy(policy_copy) as running:
        versions = {(await running.info()).policy_version}
        seen: set[str] = set()
        denied: list[str] = []
        done = asyncio.Event()
        batch = policy_pb2.BatchCheckRequest(
            checks=[
                policy_pb2.CheckRequest(
                    subject=s, workspace_id=DEMO_WS, action="actions:pause_agent", resource=AGENT
                )
                for s in ("bob", "alice", "bob")
            ]
        )

        async def checker() -> int:
            count = 0
            while not done.is_set():
                reply = await running.check("bob", "actions:pause_agent", AGENT)
                seen.add(reply.policy_version)
                if not reply.allowed:
                    denied.append(f"{reply.reason} at {reply.policy_version}")
                replies = await running.stub.BatchCheck(batch, metadata=running.metadata)
                assert {r.policy_version for r in replies.results} == {replies.policy_version}
                if not all(r.allowed for r in replies.results):
                    denied.append(f"batch at {replies.policy_version}")
                count += 1
            return count

        tasks = [asyncio.create_task(checker()) for _ in range(8)]
        for i in range(50):
            policy.write_text(original + (FRANK if i % 2 == 0 else ""))
            assert await running.built.reloader.reload(), running.built.reloader.state
            versions.add((await running.info()).policy_version)
            await asyncio.sleep(0)
        done.set()
        counts = await asyncio.gather(*tasks)
        assert denied == []
        assert sum(counts) > 50
        assert len(versions) == 2
        assert seen <= versions
        assert len(seen) == 2


async def test_file_change_is_picked_up_by_the_watcher(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    async with start_policy(policy_copy, watch=True, reload_debounce_ms=50) as running:
        before = (await running.info()).policy_version
        _append(policy_copy / "policy.csv", FRANK)

        async def changed() -> str:
            while True:
                info = await running.info()
                if info.policy_version != before:
                    return str(info.policy_version)
                await asyncio.sleep(0.05)

        await asyncio.wait_for(changed(), timeout=30)
        assert (await running.check("frank", "actions:pause_agent", AGENT)).allowed


async def test_not_serving_and_unavailable_until_the_first_good_load(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    _append(policy_copy / "policy.csv", "p, viewer, *, fleet/**, actions:read, alow\n")
    async with start_policy(policy_copy) as running:
        health: object = health_pb2_grpc.HealthStub(running.channel)
        request = health_pb2.HealthCheckRequest(service="fleetward.policy.v1.PolicyService")
        status = await health.Check(request)  # type: ignore[attr-defined]
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.check("bob", "actions:read", AGENT)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        info, _ = decode(caught.value)
        assert info.reason == "POLICY_NOT_LOADED"
        described = await running.info()
        assert described.policy_version == ""
        assert "alow" in described.last_reload_error
        _replace(policy_copy / "policy.csv", "alow", "allow")
        assert await running.built.reloader.reload()
        status = await health.Check(request)  # type: ignore[attr-defined]
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert (await running.check("bob", "actions:read", AGENT)).allowed
