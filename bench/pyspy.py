"""py-spy over a measuring window, and a text summary of what it sampled.

:class:`Spies` attaches ``py-spy record`` to running processes when a load window starts
and stops it (SIGINT: py-spy then writes its file) when the window ends, so the profile
holds exactly the window's samples. The files are py-spy's ``raw`` format (collapsed
stacks, one ``frame;frame;… count`` line per distinct stack), which speedscope and
flamegraph.pl read; :func:`summarize` turns one into three tables: the functions that
were on the CPU (self), the functions under which the CPU was spent (cumulative, ours
only), and areas (asyncio, grpc, asyncpg, json, …) by the file of the top frame.

Threads py-spy takes for idle are not sampled (its default), but its idle detection is not
exact: on this VM it counted about twice the samples the measured CPU allows, with
threads blocked in ``select`` or a condition wait among them. The shares are of samples,
and the areas put those waits in one row of their own. py-spy itself takes CPU on the
same machine while it samples: the profiled run is slower than ``make bench``'s, its
shares are what counts.
"""

from __future__ import annotations

import collections
import contextlib
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
    # A thread blocked in these is waiting, whatever py-spy's idle detection said.
    (
        "waiting (select, thread waits)",
        (
            "EpollSelector.select (selectors.py)",
            "Condition.wait (threading.py)",
            "Event.wait (threading.py)",
        ),
    ),
    # C code run from an event-loop callback with no Python frame of its own: grpc's Cython
    # layer, and asyncio's C task steps (py-spy's --native would tell them apart, but it
    # pauses the target at every sample).
    ("C code under event-loop callbacks (grpc, asyncio)", ("Handle._run (asyncio/events.py)",)),
    # A thread whose target is C code: in these services grpc's poller (mostly epoll waits).
    ("C code in threads (grpc's poller)", ("Thread.run (threading.py)",)),
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
            # poller threads read as busy. Attaching needs ptrace rights over the target
            # (root, or the same user with kernel.yama.ptrace_scope 0).
            command += ["--nonblocking"]
            # Its messages go to a file: a pipe nobody reads during the window could fill.
            with (self.out_dir / f"{name}.py-spy.log").open("wb") as log:
                self._running.append(
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
                )

    def stop(self) -> None:
        """Stop every py-spy (it writes its file on SIGINT); raise if one failed. A py-spy
        that does not stop in time is killed."""
        running, self._running = self._running, []
        for process in running:
            process.send_signal(signal.SIGINT)
        failures = []
        for process, name in zip(running, self.pids, strict=True):
            try:
                code = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code not in (0, -signal.SIGINT):
                log = self.out_dir / f"{name}.py-spy.log"
                failures.append(f"{name}: {log.read_text(errors='replace')[-500:]}")
        if failures:
            raise RuntimeError("py-spy failed: " + " | ".join(failures))

    def __enter__(self) -> Spies:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop whatever still runs (an error between start and stop), quietly."""
        if self._running:
            with contextlib.suppress(RuntimeError):
                self.stop()


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
    lines = [f"{title}: {summary.samples} samples at {RATE_HZ} Hz of threads py-spy saw active"]
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
