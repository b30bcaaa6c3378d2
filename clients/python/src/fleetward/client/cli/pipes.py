"""Output whose reader went away: ``fleetward watch --json | head -1``.

Python ignores SIGPIPE, so a write to a pipe nobody reads any more raises
:class:`BrokenPipeError`; :func:`fleetward.client.cli.main` catches it once for every
command and exits quietly with :data:`~fleetward.client.cli.exit_codes.BROKEN_PIPE`
(141, what a shell reports for a program that SIGPIPE ended). What could not be written
is still in ``sys.stdout``'s buffer, and the interpreter flushes it once more on its way
out ("Exception ignored … BrokenPipeError", exit 120): :func:`detach` points the
descriptors at ``/dev/null`` first.

Output goes out through :func:`write`, in pieces: a single write larger than the stream's
buffer can lose the error (see :data:`PIECE`). A ``watch`` between events writes nothing,
so it would learn that its reader left only at the next event; :func:`reader_gone` lets
it notice at once (a pipe whose read end is closed polls as an error on Linux and the
BSDs).
"""

from __future__ import annotations

import os
import select
import stat
import sys
from typing import TextIO

# When one write is larger than the stream's buffer, BufferedWriter hands it to write(2)
# directly; if the reader leaves after taking part of it, write(2) returns that part,
# BufferedWriter returns the short count and TextIOWrapper drops the rest without an
# error (seen with CPython 3.11): `fleetward agents list --json | head -1` exited 0.
# Pieces this small always pass through the buffer, whose flush does raise EPIPE.
PIECE = 1024  # characters: at most 4 KiB of UTF-8, half the default buffer


def write(stream: TextIO, text: str) -> None:
    """Write ``text`` to ``stream`` and flush it, so that a closed pipe always raises
    :class:`BrokenPipeError` (see :data:`PIECE`).
    """
    for start in range(0, len(text), PIECE):
        stream.write(text[start : start + PIECE])
    stream.flush()


def _fd(stream: TextIO) -> int | None:
    """The descriptor under ``stream``, or None (a test's in-memory capture)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


def reader_gone(stream: TextIO) -> bool:
    """Whether ``stream`` is a pipe whose reader has closed it (False if unknown)."""
    fd = _fd(stream)
    if fd is None or not hasattr(select, "poll"):
        return False
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLERR | select.POLLHUP)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except OSError:
        return False


def detach() -> None:
    """Point stdout (and stderr, when its reader left too) at ``/dev/null``.

    Called after a :class:`BrokenPipeError`: nothing more is shown, and the interpreter's
    final flush of the unwritten rest succeeds silently.
    """
    targets = [sys.stdout]
    if reader_gone(sys.stderr):  # ``2>&1 | head -1``: the same pipe
        targets.append(sys.stderr)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in targets:
            fd = _fd(stream)
            if fd is not None:
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
