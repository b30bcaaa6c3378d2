"""Generate the sync clients (``fleetward/client/_sync``) from the async ones (``_async``).

The async modules are the single hand-written source; this script rewrites them token
by token (``async def`` -> ``def``, ``await x`` -> ``x``, ``grpc.aio.`` -> ``grpc.``,
``asyncio.sleep`` -> ``time.sleep``, class names, the traced channel's opener) and formats
the result with ruff.

    python clients/python/scripts/unasync.py          # regenerate
    python clients/python/scripts/unasync.py --check  # exit 1 if _sync is stale
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fleetward" / "client"
SOURCE = PACKAGE / "_async"
TARGET = PACKAGE / "_sync"
MODULES = ("transport.py", "actions.py", "policy.py")

RULES: tuple[tuple[str, str], ...] = (
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\b(ActionService|PolicyService)AsyncStub\b", r"\1Stub"),
    (r"\bAsyncTransport\b", "SyncTransport"),
    (r"\bAsyncClientBase\b", "SyncClientBase"),
    (r"\bAsyncActionsClient\b", "ActionsClient"),
    (r"\bAsyncPolicyClient\b", "PolicyClient"),
    (r"\bAsync client\b", "Blocking client"),
    (r"\bgrpc\.aio\.", "grpc."),
    (r"\bimport asyncio\b", "import time"),
    (r"\basyncio\.sleep\b", "time.sleep"),
    (r"\bfleetward\.client\._async\b", "fleetward.client._sync"),
    (r"\b_tracing\.open_aio_channel\b", "_tracing.open_channel"),
)


def _ruff(args: list[str], text: str, filename: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(filename), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if not result.stdout:
        raise RuntimeError(f"ruff {' '.join(args)} failed on {filename}: {result.stderr}")
    return result.stdout


def generate(name: str) -> str:
    """The generated text of ``_sync/<name>``."""
    text = (SOURCE / name).read_text()
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    header = f"# GENERATED from _async/{name} by clients/python/scripts/unasync.py. Do not edit.\n"
    target = TARGET / name
    text = _ruff(
        ["check", "--fix", "--unsafe-fixes", "--quiet", "--exit-zero"], header + text, target
    )
    return _ruff(["format", "--quiet"], text, target)


def main(argv: list[str] | None = None) -> int:
    """Regenerate ``_sync`` (or with ``--check``, report whether it is stale)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if _sync is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in MODULES:
        text = generate(name)
        path = TARGET / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print("stale (run clients/python/scripts/unasync.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
