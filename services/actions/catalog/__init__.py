"""The action catalog: one module per action type, found by :func:`registry`.

A module whose name does not start with ``_`` defines ``ACTION``, an
:class:`~services.actions.catalog._base.ActionKind`. Nothing else in the service lists
the action types.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from services.actions.catalog._base import (
    RESULT_AGENT_LIMIT,
    ActionKind,
    Change,
    Target,
    agent_result,
)

__all__ = [
    "RESULT_AGENT_LIMIT",
    "ActionKind",
    "Change",
    "Target",
    "agent_result",
    "get",
    "registry",
]


@functools.cache
def registry() -> dict[str, ActionKind[Any]]:
    """Every action type by name, discovered from the modules of this package."""
    found: dict[str, ActionKind[Any]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "ACTION", None)
        if not isinstance(kind, ActionKind):
            raise TypeError(f"{module.__name__} must define ACTION = <ActionKind>")
        found[kind.name] = kind
    return found


def get(name: str) -> ActionKind[Any] | None:
    """The action type ``name``, or None."""
    return registry().get(name)
