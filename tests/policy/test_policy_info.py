"""GetPolicyInfo lists the warnings of the policy being served (from its load)."""

from __future__ import annotations

from pathlib import Path

from services.policy.servicer import MAX_INFO_WARNINGS
from tests.policy.conftest import StartPolicy

# A role bound to someone that no p line grants anything: loadable, but a warning.
TYPO = "g, erin, operater, *\n"
GRANTS_NOTHING = "warning: role 'operater' is bound but grants nothing"


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


async def test_the_demo_policy_has_no_warnings(start_policy: StartPolicy) -> None:
    async with start_policy() as running:
        assert list((await running.info()).warnings) == []


async def test_a_role_that_grants_nothing_is_listed_with_its_line(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    csv = policy_copy / "policy.csv"
    _append(csv, TYPO)
    line = len(csv.read_text().splitlines())
    async with start_policy(policy_copy) as running:
        info = await running.info()
    assert list(info.warnings) == [f"{csv}:{line}: {GRANTS_NOTHING} (no p line, no granted parent)"]


async def test_warnings_follow_the_served_policy_across_reloads(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    csv = policy_copy / "policy.csv"
    original = csv.read_text()
    async with start_policy(policy_copy) as running:
        _append(csv, TYPO)
        assert await running.built.reloader.reload()
        warned = await running.info()
        assert any(GRANTS_NOTHING in w for w in warned.warnings)
        # A failed reload keeps the served policy, and so its warnings.
        _append(csv, "p, viewer, *, fleet/**, actions:read, alow\n")
        assert not await running.built.reloader.reload()
        failed = await running.info()
        assert failed.last_reload_error
        assert (failed.policy_version, list(failed.warnings)) == (
            warned.policy_version,
            list(warned.warnings),
        )
        # The files as they were, without the typo: the list empties.
        csv.write_text(original)
        assert await running.built.reloader.reload()
        assert list((await running.info()).warnings) == []


async def test_a_long_list_is_cut_and_says_how_many_more(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    csv = policy_copy / "policy.csv"
    count = MAX_INFO_WARNINGS + 50
    _append(csv, "".join(f"g, erin, missing-role-{i}, *\n" for i in range(count)))
    async with start_policy(policy_copy) as running:
        warnings = list((await running.info()).warnings)
    assert len(warnings) == MAX_INFO_WARNINGS
    assert all("grants nothing" in w for w in warnings[:-1])
    assert warnings[-1] == (
        f"and {count - MAX_INFO_WARNINGS + 1} more warnings "
        "(python -m services.policy validate lists all)"
    )
