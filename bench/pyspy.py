"""py-spy over a measuring window, and a text summary of what it sampled.

:class:`Spies` attaches ``py-spy record`` to running processes when a load window starts
and stops it (SIGINT: py-spy then writes its file) when the window ends, so the profile
holds exactly the window's samples. The files are py-spy's ``raw`` format (collapsed
stacks, one ``frame;frame;… count`` line per distinct stack), which speedscope and
flamegraph.pl read; :func:`summarize` turns one into three tables: the functions that
were on the CPU (self), the functions under which the CPU was spent (cumulative, ours
only), and areas (asyncio, grpc, asyncpg, json, …) by the file of the top frame.

Idle threads are not sampled (py-spy's default), so shares are of CPU, not of time. py-spy
itself takes CPU on the same machine while it samples: the profiled run is slower than
``make bench``'s, its shares are what counts.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

RATE_HZ = 250
STOP_TIMEOUT_S = 30.0

# Areas by a sample's top frame (paths as py-spy shows them, relative to sys.path), first
# match wins; "ours" is everything under services/ and clients/.
AREAS = (
    # C code run from an event-loop callback with no Python frame of its own: grpc's Cython
    # layer (py-spy's --native names it; the frames it adds cost more than they tell here).
    ("compiled code in event-loop callbacks (grpc)", ("Handle._run (asyncio/events.py)",)),
    ("compiled code in threads", ("Thread.run (threading.py)", "Condition.wait (threading.py)")),
    ("socket writes (asyncio transport)", ("_SelectorSocketTransport.write",)),
    ("asyncio (event loop, reads)", ("(asyncio/", "(selectors.py)", "(socket.py)")),
    ("grpc (Python layer)", ("(grpc/",)),
    ("asyncpg", ("(asyncpg/",)),
    ("json", ("(json/",)),
    ("logging", ("(logging/",)),
    ("protobuf", ("(google/protobuf/", "(protobuf/", "_pb2")),
    ("hashing and hmac", ("(hashlib.py)", "(hmac.py)")),
    ("jwt", ("(jwt/",)),
    ("casbin", ("(casbin/",)),
    ("uuid, datetime", ("(uuid.py)", "(datetime.py)")),
    ("prometheus_client", ("(prometheus_client/",)),
    ("our code", ("(services/", "(clients/")),
)


@dataclass
class Spies:
    """``py-spy record`` of named pids between :meth:`start` and :meth:`stop`.

    Attributes:
        pids: Name -> process id to profile.
        out_dir: Where ``<name>.txt`` (raw collapsed stacks) is written.
    """

    pids: dict[str, int]
    out_dir: Path
    _running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def files(self) -> dict[str, Path]:
        """Name -> the file its profile is written to."""
        return {name: self.out_dir / f"{name}.txt" for name in self.pids}

    def start(self) -> None:
        """Attach py-spy to every process (non-blocking: the target never pauses)."""
        beside = Path(sys.executable).parent / "py-spy"  # the venv's, whatever PATH says
        exe = str(beside) if beside.exists() else shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed (it is in the dev extras: make venv)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            command = [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ)]
            command += ["--format", "raw", "--nolineno", "-o", str(self.files()[name])]
            # Not --native: it pauses the target at every sample to unwind its C stack, which
            # at 64 calls in flight cut Execute's throughput to a fifth and made the idle
            # poller threads read as busy.
            command += ["--nonblocking"]
            self._running.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )

    def stop(self) -> None:
        """Stop every py-spy (it writes its file on SIGINT); raise if one failed."""
        failures = []
        for process in self._running:
            process.send_signal(signal.SIGINT)
        for process in self._running:
            _, err = process.communicate(timeout=STOP_TIMEOUT_S)
            if process.returncode not in (0, -signal.SIGINT):
                failures.append(err.decode(errors="replace")[-500:])
        self._running.clear()
        if failures:
            raise RuntimeError("py-spy failed: " + " | ".join(failures))


@dataclass(frozen=True)
class Summary:
    """What one profile holds: samples, and (name, share of samples) rows, largest first."""

    samples: int
    self_rows: list[tuple[str, float]]
    ours_rows: list[tuple[str, float]]
    area_rows: list[tuple[str, float]]


def summarize(path: Path, top: int = 15) -> Summary:
    """Self, cumulative-of-ours and area shares of a py-spy raw profile."""
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        areas[_area(frames[-1])] += count
        for frame in {f for f in frames if _is_ours(f)}:
            ours[frame] += count

    def rows(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / max(1, total)) for name, n in counter.most_common(top)]

    return Summary(total, rows(own), rows(ours), rows(areas))


def render(title: str, summary: Summary) -> str:
    """The three tables of ``summary`` as text."""
    lines = [f"{title}: {summary.samples} samples at {RATE_HZ} Hz (CPU only, not idle)"]
    for heading, found, name_of in (
        ("on the CPU (self)", summary.self_rows, _short),
        ("under our functions (cumulative)", summary.ours_rows, _short),
        ("by area of the top frame", summary.area_rows, str),
    ):
        lines.append(f"  {heading}:")
        lines += [f"    {share * 100:5.1f} %  {name_of(name)}" for name, share in found]
    return "\n".join(lines)


def _area(frame: str) -> str:
    for name, needles in AREAS:
        if any(needle in frame for needle in needles):
            return name
    return "other: " + _file(frame)


def _is_ours(frame: str) -> bool:
    return "(services/" in frame or "(clients/" in frame


def _file(frame: str) -> str:
    """``function (path)`` -> the path's last two parts."""
    path = frame.rpartition("(")[2].rstrip(")").rstrip()
    return "/".join(path.split("/")[-2:])


def _short(frame: str) -> str:
    """``function (…/a/b.py)`` -> ``function (a/b.py)``."""
    name = frame.rpartition(" (")[0] or frame
    return f"{name} ({_file(frame)})"
