"""pycasbin's pattern functions as the decision index runs them, each compiled once.

``fast_index.DecisionIndex`` tests a ``globMatch`` pattern or a ``keyMatch`` pattern with
``*`` once per candidate line on every request; compiling each pattern at load time
keeps that a regular-expression match (or a prefix test), with exactly pycasbin's
answers (``tests/policy/test_glob.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import wcmatch.glob as wcglob

_GLOB_FLAGS = wcglob.GLOBSTAR | wcglob.BRACE


def casbin_glob(pattern: str) -> Callable[[str], bool]:
    """``globMatch(value, pattern)`` as pycasbin 2.8 computes it, with the glob compiled once."""
    while pattern.startswith("*/"):
        pattern = pattern[1:]
    parts = ["**" if p == "**" else re.sub(r"\*{2,}", "*", p) for p in pattern.split("/")]
    converted = "/".join(parts)
    if converted.endswith("/**"):
        converted = "{" + converted[:-3] + "," + converted + "}"
    # wcmatch's own matcher wraps each call in a match object that also serves real
    # file systems; its translation, compiled here once, answers the same for a string.
    include, exclude = wcglob.translate(converted, flags=_GLOB_FLAGS)
    included = re.compile("|".join(f"(?:{p})" for p in include)).fullmatch
    if not exclude:
        return lambda value: included(value) is not None
    excluded = re.compile("|".join(f"(?:{p})" for p in exclude)).fullmatch
    return lambda value: included(value) is not None and excluded(value) is None


def prefix_test(prefix: str) -> Callable[[str], bool]:
    """Whether a value starts with ``prefix`` (``keyMatch`` with a pattern ending in ``*``)."""

    def test(value: str) -> bool:
        return value.startswith(prefix)

    return test
