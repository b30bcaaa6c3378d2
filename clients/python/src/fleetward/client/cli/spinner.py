"""A small stderr spinner (only on a terminal) that lets result lines pass through."""

from __future__ import annotations

import itertools
import sys
import threading
from types import TracebackType
from typing import TextIO

from fleetward.client.cli import pipes

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
INTERVAL_S = 0.1


class Spinner:
    """``with Spinner("executing"):`` animates on stderr while the block runs.

    Does nothing unless ``stream`` is a terminal, so scripts and pipes stay clean.
    ``print`` writes a line to stdout without tearing the animation.
    """

    def __init__(self, message: str, *, stream: TextIO | None = None) -> None:
        self.message = message
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Spinner:
        if self._enabled:
            self._thread = threading.Thread(target=self._spin, name="fleetward-spinner")
            self._thread.daemon = True
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            with self._lock:
                self._clear()

    def update(self, message: str) -> None:
        """Change the text next to the spinner."""
        self.message = message

    def print(self, line: str) -> None:
        """Print ``line`` to stdout, clearing the spinner first."""
        with self._lock:
            if self._enabled:
                self._clear()
            pipes.write(sys.stdout, line + "\n")

    def _clear(self) -> None:
        self._stream.write("\r\x1b[K")
        self._stream.flush()

    def _spin(self) -> None:
        for frame in itertools.cycle(FRAMES):
            with self._lock:
                self._stream.write(f"\r\x1b[K{frame} {self.message}")
                self._stream.flush()
            if self._stop.wait(INTERVAL_S):
                return
