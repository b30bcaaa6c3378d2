"""``python -m tests.catalog.actions_service serve``: the action service with the test
catalog (``restart_agent`` has an external effect, recorded in two steps).
"""

from __future__ import annotations

import sys

from services.actions.__main__ import main
from tests.catalog import from_env, install

if __name__ == "__main__":
    install(from_env())
    sys.exit(main())
