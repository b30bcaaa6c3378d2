"""The one vocabulary both services share: ids, resource paths, permissions, limits, the
event channel.

Agent and department ids match :data:`ID_PATTERN` (the schema checks the same). Resource
paths encode the scope (docs/architecture.md §3): ``fleet``, ``fleet/departments/<id>``,
``fleet/departments/<id>/agents/<id>``. Permissions are ``actions:read``,
``actions:rollback`` and ``actions:<ExecuteRequest params field>``; the field names are
read from the generated descriptors, so no running service is needed.
"""

from __future__ import annotations

import functools
import re
import uuid

from fleetward.actions.v1 import actions_pb2

# An agent or department id (migrations/0001 checks the same expression).
_ID = r"[a-z0-9][a-z0-9._-]{0,63}"
ID_PATTERN = re.compile(rf"^{_ID}$")
ID_RULE = f"must match ^{_ID}$"
# An idempotency key (migrations/0001 checks the same expression).
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A token's subject (a policy subject) is at most this long.
MAX_SUBJECT = 256
# The subjects of the service's own actors (the expiring-pause job); no token may carry one.
SYSTEM_PREFIX = "system:"
# The PostgreSQL channel every transaction that appends audit events notifies, once.
NOTIFY_CHANNEL = "fleetward_events"

FLEET_PATH = "fleet"
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


def department_path(department_id: str) -> str:
    """The policy resource path of a department (and of its own budget)."""
    return f"{FLEET_PATH}/departments/{department_id}"


def agent_path(department_id: str, agent_id: str) -> str:
    """The policy resource path of an agent (and of its own budget): it names the department
    the agent is in, so a grant or deny on a department covers its agents.
    """
    return f"{FLEET_PATH}/departments/{department_id}/agents/{agent_id}"


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
