"""The grammar of what the policy service is asked about: ids, resource paths, permissions.

Resource paths encode the scope (docs/architecture.md §3): ``fleet``,
``fleet/departments/<id>``, ``fleet/departments/<id>/agents/<id>``. Permissions are
``actions:read``, ``actions:rollback`` and ``actions:<ExecuteRequest params field>``; the
field names are read from the generated descriptors, so no running service is needed.
"""

from __future__ import annotations

import functools
import re
import uuid

from fleetward.actions.v1 import actions_pb2

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ID = r"[a-z0-9][a-z0-9._-]{0,63}"
RESOURCE_PATTERN = re.compile(rf"^fleet(/departments/{_ID}(/agents/{_ID})?)?$")
_UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
PERMISSION_PREFIX = "actions:"
ANY_WORKSPACE = "*"


@functools.cache
def action_types() -> tuple[str, ...]:
    """The action types: the field names of ``ExecuteRequest``'s ``params`` oneof."""
    oneof = actions_pb2.ExecuteRequest.DESCRIPTOR.oneofs_by_name["params"]
    return tuple(field.name for field in oneof.fields)


@functools.cache
def known_permissions() -> frozenset[str]:
    """Every permission a Check may ask about."""
    names = {"read", "rollback", *action_types()}
    return frozenset(PERMISSION_PREFIX + name for name in names)


def is_resource(path: str) -> bool:
    """Whether ``path`` is a resource path of the grammar above."""
    return RESOURCE_PATTERN.fullmatch(path) is not None


@functools.lru_cache(maxsize=4096)
def normalize_workspace(value: str) -> str | None:
    """The canonical (lowercase, hyphenated) UUID, or None when ``value`` is not one."""
    if not _UUID_PATTERN.fullmatch(value):
        return None
    return str(uuid.UUID(value))


def is_permission_pattern(value: str) -> bool:
    """Whether a policy line's action pattern is a known permission or ``actions:*``."""
    return value == PERMISSION_PREFIX + "*" or value in known_permissions()
