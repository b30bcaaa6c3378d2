"""docs/configuration.md lists every variable the code reads, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from tests.foundation.conftest import REPO

# A variable name as a string literal: "FLEETWARD_X" (not an identifier such as a constant).
READ = re.compile(r"""["'](FLEETWARD_[A-Z0-9_]+|DATABASE_URL)["']""")
LISTED = re.compile(r"`(FLEETWARD_[A-Z0-9_]+|DATABASE_URL)`")
CODE = ("services", "clients/python/src/fleetward/client", "tests", "bench")


def names_read() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in CODE:
        for path in (REPO / top).rglob("*.py"):
            if path.name == "test_configuration_doc.py":
                continue
            for name in READ.findall(path.read_text()):
                found.setdefault(name, path.relative_to(REPO))
    return found


def test_every_variable_the_code_reads_is_documented() -> None:
    listed = set(LISTED.findall((REPO / "docs" / "configuration.md").read_text()))
    missing = {name: str(where) for name, where in names_read().items() if name not in listed}
    assert missing == {}, "add these to docs/configuration.md"


def test_the_page_lists_no_variable_that_nothing_reads() -> None:
    listed = set(LISTED.findall((REPO / "docs" / "configuration.md").read_text()))
    makefiles = (REPO / "Makefile").read_text() + (REPO / ".ci" / "run").read_text()
    stale = {n for n in listed - set(names_read()) if n not in makefiles}
    assert stale == set(), "docs/configuration.md lists variables nothing reads"
