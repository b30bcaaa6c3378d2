"""The indexed decision path answers exactly as plain ``casbin.Enforcer.enforce_ex``.

The reference is a fresh ``casbin.Enforcer`` read by pycasbin's own file adapter from the
same files, with the same ``*`` domain-matching function as the service. Each example
compares (allowed, explaining line) and the implicit roles with the index, and the whole
``Decision`` (reason, roles, matched rule and line) with ``CasbinDecider``. The default
suite runs 300 random requests per policy; the slow-marked test runs 10,000.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import casbin
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.policygen import DEMO_POLICY_DIR, PERMISSIONS, generate, write_policy_dir
from services.policy.enforcer import build_enforcer, workspace_matches
from services.policy.engine import CasbinDecider, Decision, IndexedDecider, make_decider
from services.policy.files import read_policy_dir
from services.policy.validate import validate

Request = tuple[str, str, str, str]  # subject, workspace, action, resource
Batch = tuple[str, str, str, list[str]]  # subject, workspace, action, resources


class Pair:
    """The service's deciders and a plain reference enforcer for one policy directory."""

    def __init__(self, directory: Path) -> None:
        files = read_policy_dir(directory, with_tests=False)
        lines = validate(files).lines
        fast = make_decider(build_enforcer(files, lines), lines)
        assert isinstance(fast, IndexedDecider)
        self.fast = fast
        self.slow = CasbinDecider(build_enforcer(files, lines), lines)
        self.plain = casbin.Enforcer(str(directory / "model.conf"), str(directory / "policy.csv"))
        self.plain.add_named_domain_matching_func("g", workspace_matches)
        # Names of roles (never subjects: the service denies them, pycasbin would not).
        self.role_names = {p[0] for p in self.plain.get_policy()} | {
            g[1] for g in self.plain.get_grouping_policy()
        }

    def assert_batch_equal(self, batch: Batch) -> None:
        """CheckResources' decider call vs plain ``enforce_ex`` on every resource, and vs
        one ``decide`` per resource (reason, roles, matched rule and line)."""
        subject, workspace, action, resources = batch
        plain = [self.plain.enforce_ex(subject, workspace, r, action) for r in resources]
        expected = [
            i for i, (allowed, _) in enumerate(plain) if not allowed or subject in self.role_names
        ]
        for decider in (self.fast, self.slow):
            answer = decider.decide_resources(subject, workspace, action, resources)
            assert [i for i, _ in answer.denied] == expected
            for i, decision in answer.denied:
                assert decision == self.slow.decide(
                    subject, workspace, action, resources[i], explain=True
                )
                if subject not in self.role_names and plain[i][1]:
                    assert decision.matched_rule == ", ".join(["p", *plain[i][1]])
            single = self.slow.decide(subject, workspace, action, resources[0], explain=False)
            assert answer.roles == single.roles

    def assert_equal(self, request: Request, *, decisions: bool = True) -> None:
        """Index vs plain enforcer; with ``decisions``, also the whole ``Decision``."""
        subject, workspace, action, resource = request
        index = self.fast.index
        expected = self.plain.enforce_ex(subject, workspace, resource, action)
        assert index.enforce_ex(subject, workspace, resource, action) == tuple(expected)
        assert sorted(index.implicit_roles(subject, workspace)) == sorted(
            self.plain.get_implicit_roles_for_user(subject, workspace)
        )
        if decisions:
            fast = self.fast.decide(*request, explain=True)
            assert fast == self.slow.decide(*request, explain=True)
            assert self.fast.decide(*request, explain=False) == Decision(
                fast.allowed, fast.reason, fast.roles
            )


@functools.cache
def _demo() -> Pair:
    return Pair(DEMO_POLICY_DIR)


@functools.cache
def _generated(tmp_root: str) -> tuple[Pair, Any]:
    policy = generate(rules=10_000, links=1_000)
    return Pair(write_policy_dir(Path(tmp_root) / "generated", policy)), policy


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pair, Any]:
    """The 10,000-line / 1,000-link policy, built once per module."""
    return _generated(str(tmp_path_factory.mktemp("equivalence")))


_ODD = string.ascii_lowercase[:6] + "/*?-0123[]."


def _concrete(draw: st.DrawFn, glob: str, names: list[str]) -> str:
    """A resource near ``glob``: its wildcards replaced by names, digits or nothing."""
    out = glob.replace("/**", draw(st.sampled_from(["", "/agents/agent-11", "/x"])))
    out = out.replace("[0-9]", draw(st.sampled_from(["1", "7", "x"])))
    out = out.replace("?", draw(st.sampled_from(["1", "", "-"])))
    return out.replace("*", draw(st.sampled_from([*names, ""])))


def _from_lines(lines: list[str], names: list[str]) -> st.SearchStrategy[Request]:
    """Requests aimed at the policy's own lines, so several lines often match at once."""
    p_lines = [[f.strip() for f in line.split(",")] for line in lines if line.startswith("p,")]
    g_lines = [[f.strip() for f in line.split(",")] for line in lines if line.startswith("g,")]

    @st.composite
    def request(draw: st.DrawFn) -> Request:
        _, role, workspace, glob, action, _ = draw(st.sampled_from(p_lines))
        bound = [g[1] for g in g_lines if g[2] == role and g[3] in (workspace, "*")]
        subject = draw(st.sampled_from([role, *bound]))
        if workspace == "*":
            workspace = draw(st.sampled_from([g[3] for g in g_lines]))
        if action.endswith("*"):
            action = draw(st.sampled_from(PERMISSIONS))
        return subject, workspace, action, _concrete(draw, glob, names)

    return request()


def _requests(
    subjects: list[str], workspaces: list[str], departments: list[str], agents: list[str]
) -> st.SearchStrategy[Request]:
    department = st.sampled_from(departments)
    agent = st.sampled_from(agents)
    resource = st.one_of(
        st.just("fleet"),
        department.map(lambda d: f"fleet/departments/{d}"),
        st.tuples(department, agent).map(lambda da: f"fleet/departments/{da[0]}/agents/{da[1]}"),
        st.sampled_from(["", "fleet/", "fleet//departments", "fleetx", "fleet/departments"]),
        st.text(_ODD, max_size=30).map(lambda t: "fleet/" + t),
    )
    return st.tuples(
        st.one_of(st.sampled_from(subjects), st.text(string.ascii_lowercase + "-", max_size=8)),
        st.one_of(st.sampled_from([*workspaces, "*", ""]), st.uuids().map(str)),
        st.sampled_from([*PERMISSIONS, "actions:*", "actions:", "actions:pause", "read", ""]),
        resource,
    )


_DEMO_LINES = (DEMO_POLICY_DIR / "policy.csv").read_text().splitlines()
DEMO_REQUESTS = st.one_of(
    _requests(
        ["alice", "bob", "carol", "dana", "sre-oncall", "mallory", "admin", "operator", "viewer"],
        ["ac3e0000-0000-4000-8000-000000000001", "0b5e0000-0000-4000-8000-000000000002"],
        ["engineering", "support", "sales"],
        ["eng-review-1", "eng-review-", "eng-code-1", "sup-1"],
    ),
    _from_lines(_DEMO_LINES, ["engineering", "eng-review-1", "x"]),
)
_GENERATED = generate(rules=10_000, links=1_000)
GENERATED_REQUESTS = st.one_of(
    _requests(
        [*_GENERATED.subjects[:200], *_GENERATED.roles],
        list(_GENERATED.workspaces),
        list(_GENERATED.departments),
        list(_GENERATED.agents),
    ),
    _from_lines(list(_GENERATED.lines), ["agent-11", "dept-1", "agent-1"]),
)


def _batches(requests: st.SearchStrategy[Request], more_max: int) -> st.SearchStrategy[Batch]:
    """One request's subject, workspace and action over its resource and up to ``more_max``
    more (a plain enforce costs ~40 ms at 10,000 lines, so the generated policy's batches
    are short in the default suite)."""
    more = st.lists(requests.map(lambda r: r[3]), max_size=more_max)
    return st.tuples(requests, more).map(lambda t: (t[0][0], t[0][1], t[0][2], [t[0][3], *t[1]]))


DEMO_BATCHES = _batches(DEMO_REQUESTS, 40)
GENERATED_BATCHES = _batches(GENERATED_REQUESTS, 4)
LONG_GENERATED_BATCHES = _batches(GENERATED_REQUESTS, 20)
_SETTINGS: Callable[[int], Any] = lambda n: settings(  # noqa: E731
    max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS(300)
@given(request=DEMO_REQUESTS)
def test_demo_policy_index_equals_plain_enforce(request: Request) -> None:
    _demo().assert_equal(request)


@_SETTINGS(300)
@given(request=GENERATED_REQUESTS)
def test_generated_10k_policy_index_equals_plain_enforce(
    generated: tuple[Pair, Any], request: Request
) -> None:
    generated[0].assert_equal(request)


def test_the_deep_chain_stops_where_pycasbin_stops(generated: tuple[Pair, Any]) -> None:
    # sre-1 -> chain-0 -> … -> chain-12: pycasbin walks 10 levels, so chain-8 (9 hops) holds
    # and chain-9 (10 hops, granted restart_agent) does not.
    pair = generated[0]
    for action in ("actions:restart_agent", "actions:set_budget"):
        pair.assert_equal(("sre-1", "*", action, "fleet/departments/dept-1"))
    assert not pair.fast.decide(
        "sre-1", "*", "actions:restart_agent", "fleet", explain=False
    ).allowed
    assert pair.fast.decide(
        "sre-1", "*", "actions:set_budget", "fleet/departments/dept-1", explain=False
    ).allowed


_DUPLICATES = """p, viewer, *, fleet/**, actions:read, allow
p, viewer, *, fleet/departments/dept-1, actions:read, deny
g, alice, viewer, *
p, viewer, *, fleet/departments/dept-1, actions:read, deny
p, viewer, *, fleet, actions:read, allow
"""


def test_a_duplicate_line_is_explained_by_its_last_copy_in_both_deciders(
    tmp_path: Path,
) -> None:
    """The line number of a duplicate is its last copy's, the indexed decider's array
    (by position) as the plain decider's map (by fields); also for lines that are not
    the ones pycasbin holds (numbered by their fields)."""
    (tmp_path / "model.conf").write_text((DEMO_POLICY_DIR / "model.conf").read_text())
    (tmp_path / "policy.csv").write_text(_DUPLICATES)
    files = read_policy_dir(tmp_path, with_tests=False)
    lines = validate(files).lines
    copies = validate(files).lines  # equal lines, other tuples: not pycasbin's
    fast = make_decider(build_enforcer(files, lines), lines)
    numbered_by_fields = make_decider(build_enforcer(files, lines), copies)
    slow = CasbinDecider(build_enforcer(files, lines), lines)
    assert isinstance(fast, IndexedDecider)
    assert isinstance(numbered_by_fields, IndexedDecider)
    # The first deny decides (line 2: a copy of line 4); the last allow explains (line 5).
    for resource, expected in (("fleet/departments/dept-1", (False, 4)), ("fleet", (True, 5))):
        for decider in (fast, numbered_by_fields, slow):
            decision = decider.decide("alice", "*", "actions:read", resource, explain=True)
            assert (decision.allowed, decision.matched_line) == expected


@pytest.mark.slow
@_SETTINGS(10_000)
@given(request=DEMO_REQUESTS)
def test_ten_thousand_demo_requests_index_equals_plain_enforce(request: Request) -> None:
    _demo().assert_equal(request)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@_SETTINGS(10_000)
@given(request=GENERATED_REQUESTS)
def test_ten_thousand_generated_requests_index_equals_plain_enforce(
    generated: tuple[Pair, Any], request: Request
) -> None:
    # ~40 ms per plain enforce at 10,000 lines: compare the index only (about 7 minutes).
    generated[0].assert_equal(request, decisions=False)


@_SETTINGS(300)
@given(batch=DEMO_BATCHES)
def test_demo_policy_check_resources_equals_plain_enforce_per_resource(batch: Batch) -> None:
    _demo().assert_batch_equal(batch)


@_SETTINGS(12)
@given(batch=GENERATED_BATCHES)
def test_generated_10k_policy_check_resources_equals_plain_enforce_per_resource(
    generated: tuple[Pair, Any], batch: Batch
) -> None:
    generated[0].assert_batch_equal(batch)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@_SETTINGS(100)
@given(batch=LONG_GENERATED_BATCHES)
def test_a_hundred_long_generated_batches_equal_plain_enforce_per_resource(
    generated: tuple[Pair, Any], batch: Batch
) -> None:
    generated[0].assert_batch_equal(batch)
