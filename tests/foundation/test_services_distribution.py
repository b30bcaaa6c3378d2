"""The services' wheel carries the migrations, and an installed service reads them there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from services.actions.migrate import load_migrations
from tests.foundation.conftest import REPO, clean_env

# Run from outside the checkout: the wheel's own files are what is read.
_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from services.actions.migrate import MIGRATIONS_DIR, load_migrations
print(json.dumps({"dir": str(MIGRATIONS_DIR), "names": [m.name for m in load_migrations()]}))
"""


def test_the_wheel_ships_the_migrations_and_migrate_reads_them_from_it(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    # services/migrations stays a link to ../migrations, as in the repository.
    shutil.copytree(REPO / "services", source / "services", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "migrations", source / "migrations", ignore=ignore)
    assert (source / "services" / "migrations").is_symlink()

    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            tmp_path / "dist",
            source,
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("fleetward_services-*.whl")
    expected = [m.name for m in load_migrations()]
    with zipfile.ZipFile(wheel) as archive:
        shipped = sorted(
            Path(n).name for n in archive.namelist() if n.startswith("services/migrations/")
        )
        assert shipped == expected
        archive.extractall(tmp_path / "installed")

    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "installed")],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    found = probe.stdout
    assert str(tmp_path / "installed") in found
    assert all(name in found for name in expected)
