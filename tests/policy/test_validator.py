"""The validator catches what pycasbin accepts silently; it accepts Casbin's own examples."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import casbin
import pytest

from services.policy.enforcer import build_enforcer
from services.policy.files import PolicyFiles, read_policy_dir
from services.policy.validate import validate
from tests.policy.conftest import POLICIES, REPO_ROOT

PEER = REPO_ROOT.parent / "shared" / "peer" / "pycasbin-examples"


def _problems(policy_extra: str = "", model: str | None = None) -> list[str]:
    files = read_policy_dir(POLICIES)
    files = PolicyFiles(
        files.directory,
        model if model is not None else files.model_text,
        files.policy_text + policy_extra,
    )
    return [str(p) for p in validate(files).problems]


def test_demo_policy_is_clean() -> None:
    assert _problems() == []


def _line_of_extra() -> int:
    return len(read_policy_dir(POLICIES).policy_text.splitlines()) + 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("p2, viewer, *, fleet/**, actions:read, allow", "error: unknown ptype 'p2'"),
        ("p, viewer, *, fleet/**, actions:read, alow", "error: effect 'alow' is not allow or deny"),
        ("p, viewer, *, fleet/**, actions:read", "error: p line has 4 fields"),
        ("g, erin, viewer", "error: g line has 2 fields"),
        ("p, viewer, *, fleet/**, read, allow", "error: unknown action 'read'"),
        ("p, viewer, *, fleet/**, actions:fly, allow", "error: unknown action 'actions:fly'"),
        ("p, viewer, acme, fleet/**, actions:read, allow", "error: workspace 'acme' must be"),
        ("p, viewer, *, /fleet/**, actions:read, allow", "error: resource '/fleet/**' must be"),
        ("p, viewer, *, fleet/../x, actions:read, allow", "error: resource 'fleet/../x' must be"),
        ("p, , *, fleet/**, actions:read, allow", "error: field 1 (sub) is empty"),
        ("p, viewer, *, fleet/(**, actions:read, allow", "error: unbalanced brackets"),
        ("g, viewer, operator, *", "error: role cycle"),
        ("g, erin, operater, *", "warning: role 'operater' is bound but grants nothing"),
        ("p, ghost, *, fleet/**, actions:read, allow", "warning: role 'ghost' is granted"),
        ("p, viewer, *, fleet/**, actions:read, allow", "warning: duplicate of line 9"),
    ],
)
def test_policy_line_problem_names_file_and_line(line: str, message: str) -> None:
    problems = _problems(line + "\n")
    where = f"{POLICIES / 'policy.csv'}:{_line_of_extra()}: "
    assert any(p.startswith(where + message) for p in problems), problems


def test_every_permission_pattern_is_accepted() -> None:
    extra = "".join(
        f"p, admin, *, fleet/**, actions:{name}, deny\n"
        for name in ("read", "rollback", "pause_agent", "resume_agent", "set_budget")
    )
    extra += "p, admin, *, fleet/**, actions:restart_agent, deny\n"
    assert _problems(extra) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[matchers]", "[matcher]"), "error: unknown section [matcher]"),
        (("[matchers]", "[matcher]"), "error: missing section [matchers]"),
        (("[request_definition]\n", ""), "not a 'key = value' line"),
        (("r = sub, dom, obj, act", "r = sub, obj, act"), "error: r must be sub, dom, obj, act"),
        (("g = _, _, _", "g = _, _"), "error: g must be _, _, _"),
        (("e = some(where (p.eft == allow)) &&", "e = some(where (p.eft == allow)) ||"), "error"),
        (("m = ", "x = "), "error: key 'x' in [matchers] must be 'm'"),
    ],
)
def test_model_problems(edit: tuple[str, str], message: str) -> None:
    model = (POLICIES / "model.conf").read_text()
    assert edit[0] in model
    problems = _problems(model=model.replace(edit[0], edit[1], 1))
    assert any(message in p and "model.conf:" in p for p in problems), problems


# Every line break str.splitlines() knows ("\r\n" is one).
_BREAKS = ("\n", "\r\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def test_lines_are_numbered_as_splitlines_counts_them() -> None:
    """The validator reads the policy one line at a time, with splitlines' numbering."""
    model = (POLICIES / "model.conf").read_text()
    text = "".join(
        f"p, viewer, *, fleet/x{i}, actions:read, allow{b}" for i, b in enumerate(_BREAKS)
    )
    lines = validate(PolicyFiles(POLICIES, model, text + "\n\n# end\n")).lines
    assert [(line.number, line.fields[2]) for line in lines] == [
        (i + 1, f"fleet/x{i}") for i in range(len(_BREAKS))
    ]


@pytest.mark.parametrize("tail", ["", " é€"])  # ASCII or not
@pytest.mark.parametrize("policy", ["", "p, viewer, *, fleet, actions:read, allow\n" * 5000])
def test_policy_version_is_the_hash_of_the_encoded_files(policy: str, tail: str) -> None:
    """Hashed in pieces, the version is still sha256 over (length, bytes) of each file."""
    model, policy = "[request_definition]\nr = sub, obj, act\n" + tail, policy + tail
    digest = hashlib.sha256()
    for text in (model, policy):
        data = text.encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    assert PolicyFiles(POLICIES, model, policy).version == digest.hexdigest()[:12]


def _peer_pairs() -> list[tuple[Path, Path]]:
    if not PEER.is_dir():
        return []
    pairs = []
    for model in sorted(PEER.glob("*_model.conf")):
        policy = PEER / model.name.replace("_model.conf", "_policy.csv")
        if policy.exists():
            pairs.append((model, policy))
    return pairs


@pytest.mark.skipif(
    not PEER.is_dir(),
    reason=f"peer corpus {PEER} (../shared/peer/pycasbin-examples) is absent",
)
def test_validator_accepts_pycasbin_examples_and_reads_lines_like_pycasbin() -> None:
    pairs = _peer_pairs()
    assert len(pairs) >= 15
    for model_path, policy_path in pairs:
        files = PolicyFiles(
            PEER,
            model_path.read_text(),
            policy_path.read_text(),
            model_file=model_path.name,
            policy_file=policy_path.name,
        )
        result = validate(files, conventions=False)
        assert result.ok, [str(p) for p in result.errors]
        # Our line reader agrees with pycasbin's own file adapter, line for line.
        reference = casbin.Enforcer(str(model_path), str(policy_path))
        ours = build_enforcer(files, result.lines)
        for sec in ("p", "g"):
            for ptype, assertion in reference.get_model().model.get(sec, {}).items():
                mine = ours.get_model().model[sec][ptype].policy
                assert Counter(map(tuple, mine)) == Counter(map(tuple, assertion.policy)), (
                    policy_path.name,
                    ptype,
                )


def test_an_enforcer_loads_its_lines_once() -> None:
    # The adapter drops the lines after the load; a second load must fail, not quietly
    # load an empty policy.
    files = read_policy_dir(POLICIES)
    result = validate(files)
    enforcer = build_enforcer(files, result.lines)
    assert enforcer.get_model().model["p"]["p"].policy
    with pytest.raises(RuntimeError, match="loaded once"):
        enforcer.load_policy()
