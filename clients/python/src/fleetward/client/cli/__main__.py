"""``python -m fleetward.client.cli``."""

from __future__ import annotations

import sys

from fleetward.client.cli import main

sys.exit(main())
