"""pycasbin's own example models: the index equals plain enforce, or the service falls back.

The examples live in ``../shared/peer/pycasbin-examples/`` (beside the repository in CI);
without that folder these tests skip. A pair whose model compiles to a
``DecisionIndex`` is compared with a fresh plain enforcer on random requests built from
the policy's own values; a pair that does not compile must make ``make_decider`` return
the plain ``CasbinDecider`` (the service then decides with ``enforce_ex`` as is).
"""

from __future__ import annotations

import functools
import string
from pathlib import Path
from typing import Any

import casbin
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.policy.enforcer import workspace_matches
from services.policy.engine import CasbinDecider, make_decider
from services.policy.fast_index import DecisionIndex, Unsupported

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "peer" / "pycasbin-examples"
PAIRS = [
    ("basic_model.conf", "basic_policy.csv"),
    ("basic_model_without_spaces.conf", "basic_policy.csv"),
    ("basic_with_root_model.conf", "basic_policy.csv"),
    ("basic_without_resources_model.conf", "basic_without_resources_policy.csv"),
    ("basic_without_users_model.conf", "basic_without_users_policy.csv"),
    ("basic_model.conf", "basic_inverse_policy.csv"),
    ("basic_model.conf", "empty_policy.csv"),
    ("keymatch_model.conf", "keymatch_policy.csv"),
    ("keymatch2_model.conf", "keymatch2_policy.csv"),
    ("keymatch_custom_model.conf", "keymatch_policy.csv"),
    ("globmatch_model.conf", "globmatch_policy.csv"),
    ("ipmatch_model.conf", "ipmatch_policy.csv"),
    ("rbac_model.conf", "rbac_policy.csv"),
    ("rbac_model.conf", "rbac_with_hierarchy_policy.csv"),
    ("rbac_model_matcher_using_in_op_bracket.conf", "rbac_policy.csv"),
    ("rbac_with_deny_model.conf", "rbac_with_deny_policy.csv"),
    ("rbac_with_not_deny_model.conf", "rbac_with_deny_policy.csv"),
    ("rbac_with_domains_model.conf", "rbac_with_domains_policy.csv"),
    ("rbac_with_domains_model.conf", "rbac_with_domains_policy2.csv"),
    ("rbac_with_domains_model.conf", "rbac_with_hierarchy_with_domains_policy.csv"),
    ("rbac_with_domains_without_policy_matcher.conf", "rbac_with_domains_policy.csv"),
    ("rbac_with_domain_pattern_model.conf", "rbac_with_domain_pattern_policy.csv"),
    (
        "rbac_with_domain_and_policy_pattern_model.conf",
        "rbac_with_domain_and_policy_pattern_policy.csv",
    ),
    ("rbac_with_all_pattern_model.conf", "rbac_with_all_pattern_policy.csv"),
    ("rbac_with_resource_roles_model.conf", "rbac_with_resource_roles_policy.csv"),
    ("rbac_with_pattern_model.conf", "rbac_with_pattern_policy.csv"),
    ("rbac_with_multiply_matched_pattern.conf", "rbac_with_multiply_matched_pattern.csv"),
    ("priority_model.conf", "priority_policy.csv"),
    ("priority_model_explicit.conf", "priority_policy_explicit.csv"),
    ("subject_priority_model.conf", "subject_priority_policy.csv"),
    ("subject_priority_model_with_domain.conf", "subject_priority_policy_with_domain.csv"),
    ("abac_rule_model.conf", "abac_rule_policy.csv"),
    ("abac_multiple_rules_model.conf", "abac_multiple_rules_policy.csv"),
    ("multiple_policy_definitions_model.conf", "multiple_policy_definitions_policy.csv"),
    ("rbac_with_temporal_roles_model.conf", "rbac_with_temporal_roles_policy.csv"),
    ("rbac_with_domain_temporal_roles_model.conf", "rbac_with_domain_temporal_roles_policy.csv"),
]
# Must compile to an index: the RBAC (with domains, deny, "*" domain patterns) and ACL shapes.
MUST_QUALIFY = {
    ("basic_model.conf", "basic_policy.csv"),
    ("rbac_model.conf", "rbac_policy.csv"),
    ("rbac_model.conf", "rbac_with_hierarchy_policy.csv"),
    ("rbac_with_deny_model.conf", "rbac_with_deny_policy.csv"),
    ("rbac_with_not_deny_model.conf", "rbac_with_deny_policy.csv"),
    ("rbac_with_domains_model.conf", "rbac_with_domains_policy.csv"),
    ("rbac_with_domains_model.conf", "rbac_with_hierarchy_with_domains_policy.csv"),
    ("rbac_with_all_pattern_model.conf", "rbac_with_all_pattern_policy.csv"),
}

pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir(),
    reason=f"pycasbin's examples are not at {EXAMPLES} (they sit beside the clone in CI)",
)


def _enforcer(model: str, policy: str) -> Any:
    enforcer = casbin.Enforcer(str(EXAMPLES / model), str(EXAMPLES / policy))
    if "g" in enforcer.rm_map:  # the service's domain matching, on both sides
        enforcer.add_named_domain_matching_func("g", workspace_matches)
    return enforcer


@functools.cache
def _built(model: str, policy: str) -> tuple[Any, DecisionIndex | None, str]:
    """(reference enforcer, index or None, why not) for one pair."""
    try:
        reference = _enforcer(model, policy)
        candidate = _enforcer(model, policy)
    except Exception as exc:
        pytest.skip(f"pycasbin cannot load {model} + {policy}: {exc}")
    try:
        return reference, DecisionIndex(candidate, workspace_matches), ""
    except Unsupported as exc:
        return reference, None, str(exc)


def _values(policy: str) -> list[str]:
    values: set[str] = set()
    for line in (EXAMPLES / policy).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            values.update(field.strip() for field in line.split(",")[1:])
    return sorted(values | {"", "*", "anyone"})


def _existing(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [p for p in pairs if (EXAMPLES / p[0]).is_file() and (EXAMPLES / p[1]).is_file()]


def test_the_rbac_and_acl_examples_compile_to_an_index() -> None:
    missing = {pair for pair in MUST_QUALIFY if _built(*pair)[1] is None}
    assert not missing, {pair: _built(*pair)[2] for pair in missing}


@pytest.mark.parametrize(("model", "policy"), _existing(PAIRS))
def test_example_is_indexed_identically_or_falls_back_to_plain_enforce(
    model: str, policy: str
) -> None:
    reference, index, why = _built(model, policy)
    if index is None:
        decider = make_decider(_enforcer(model, policy), [])
        assert type(decider) is CasbinDecider, why
        return
    values = _values(policy)
    tokens = len(reference.model.model["r"]["r"].tokens)
    field = st.one_of(st.sampled_from(values), st.text(string.ascii_letters + "/:*_", max_size=8))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=st.tuples(*[field] * tokens))
    def equal(request: tuple[str, ...]) -> None:
        assert index.enforce_ex(*request) == tuple(reference.enforce_ex(*request))
        if tokens >= 2 and "g" in reference.rm_map:
            domain = request[1] if index.roles.domains else ""
            # pycasbin keeps a role's parents in a set: the order is arbitrary.
            assert sorted(index.implicit_roles(request[0], domain)) == sorted(
                reference.get_implicit_roles_for_user(request[0], domain)
            )

    equal()
