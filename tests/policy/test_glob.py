"""The index's compiled globs answer exactly as pycasbin's ``globMatch`` does."""

from __future__ import annotations

from casbin.util.builtin_operators import glob_match_func
from hypothesis import given, settings
from hypothesis import strategies as st

from services.policy.fast_patterns import casbin_glob

_segment = st.sampled_from(
    [
        "fleet",
        "departments",
        "agents",
        "eng",
        "eng-1",
        "*",
        "**",
        "***",
        "e*",
        "*-1",
        "{a,eng}",
        "?",
        "[a-e]*",
        ".hidden",
        "!x",
        "",
    ]
)
_value_segment = st.sampled_from(
    ["fleet", "departments", "agents", "eng", "eng-1", "a", "x", ".hidden", "e", ""]
)
patterns = st.lists(_segment, min_size=1, max_size=6).map("/".join)
values = st.lists(_value_segment, min_size=1, max_size=6).map("/".join)


@settings(max_examples=2000, deadline=None)
@given(pattern=patterns, value=values)
def test_compiled_glob_equals_pycasbin(pattern: str, value: str) -> None:
    assert casbin_glob(pattern)(value) == bool(glob_match_func(value, pattern))
