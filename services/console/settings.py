"""The console's configuration, read from ``FLEETWARD_*`` variables (README, "Configuration")."""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from services.common.settings import SettingsError, env_int, env_list, env_str

DEFAULT_ADDR = "127.0.0.1:8080"
DEFAULT_TARGET = "127.0.0.1:50051"
DEMO_USERS = "alice,bob,carol,dana"
TRACE_ID = re.compile(r"[0-9a-f]{32}")


class AuthMode(StrEnum):
    """Where the signed-in user's token comes from."""

    PROXY = "proxy"
    """The ``Authorization: Bearer`` header set by the company's auth proxy."""
    DEV = "dev"
    """A dev sign-in page that mints a short-lived token into a cookie (dev secrets only)."""


@dataclass(frozen=True)
class DevSignIn:
    """What the dev sign-in needs to mint tokens the action service accepts."""

    jwt_secret: str
    users: tuple[str, ...]
    audience: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class ConsoleSettings:
    """Everything ``python -m services.console serve`` is configured by.

    Attributes:
        listen_addr: ``host:port`` to serve HTTP on.
        actions_target: The action service, ``host:port``.
        actions_ca: PEM CA bundle for TLS to the action service; ``None``: plaintext.
        auth: Where tokens come from.
        dev: The dev sign-in (only with ``auth == AuthMode.DEV``).
        workspace_id: The workspace ``/`` opens; ``None`` asks for one.
        allowed_hosts: ``Host`` header names served (DNS rebinding defence).
        origins: Origins a POST may come from; empty: the request's own origin only.
        trusted_proxies: Addresses whose ``X-Forwarded-*`` headers are believed; empty:
            nobody's (a local client could otherwise claim to be https or anyone).
        live_per_user: Live pages one user may hold open on this console.
        live_total: Live pages all users together may hold open.
        max_connections: HTTP connections served at once (more get 503).
        request_timeout_s: Seconds a connection may take to send a whole request (head and
            body; after connecting, or after its last response) before it is closed.
        trace_url: An http(s) URL with ``{trace_id}`` in it (the tracing backend's trace
            page); ``None``: trace ids are shown as text only.
    """

    listen_addr: str = DEFAULT_ADDR
    actions_target: str = DEFAULT_TARGET
    actions_ca: Path | None = None
    auth: AuthMode = AuthMode.PROXY
    dev: DevSignIn | None = None
    workspace_id: str | None = None
    allowed_hosts: frozenset[str] = frozenset({"127.0.0.1", "localhost"})
    origins: frozenset[str] = field(default_factory=frozenset)
    trusted_proxies: frozenset[str] = field(default_factory=frozenset)
    live_per_user: int = 20
    live_total: int = 2000
    max_connections: int = 2500
    request_timeout_s: float = 10.0
    trace_url: str | None = None

    def trace_link(self, trace_id: str) -> str | None:
        """The tracing backend's page of ``trace_id``, or None (not configured, or not a
        trace id: the value comes from the service, and only 32 hex digits go in a URL).
        """
        if self.trace_url is None or not TRACE_ID.fullmatch(trace_id):
            return None
        return self.trace_url.replace("{trace_id}", trace_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsoleSettings:
        """Read the settings; raises :class:`SettingsError` naming a bad variable."""
        raw_auth = env_str(env, "FLEETWARD_CONSOLE_AUTH", AuthMode.PROXY)
        try:
            auth = AuthMode(raw_auth)
        except ValueError:
            raise SettingsError(
                f"FLEETWARD_CONSOLE_AUTH must be proxy or dev, got {raw_auth!r}"
            ) from None
        dev = None
        if auth is AuthMode.DEV:
            secret = env_str(env, "FLEETWARD_JWT_SECRET")
            if not secret:
                raise SettingsError("FLEETWARD_CONSOLE_AUTH=dev needs FLEETWARD_JWT_SECRET")
            users = sorted(env_list(env, "FLEETWARD_CONSOLE_DEV_USERS", DEMO_USERS))
            dev = DevSignIn(
                jwt_secret=secret,
                users=tuple(users),
                audience=env_str(env, "FLEETWARD_JWT_AUDIENCE") or None,
                issuer=env_str(env, "FLEETWARD_JWT_ISSUER") or None,
            )
        workspace = env_str(env, "FLEETWARD_CONSOLE_WORKSPACE") or None
        if workspace is not None:
            try:
                workspace = str(uuid.UUID(workspace))
            except ValueError:
                raise SettingsError(
                    f"FLEETWARD_CONSOLE_WORKSPACE must be a workspace UUID, got {workspace!r}"
                ) from None
        listen = env_str(env, "FLEETWARD_CONSOLE_ADDR", DEFAULT_ADDR)
        listen_host = listen.rpartition(":")[0].strip("[]")
        hosts = env_list(env, "FLEETWARD_CONSOLE_ALLOWED_HOSTS", "127.0.0.1,localhost")
        if listen_host and listen_host not in ("0.0.0.0", "::"):  # noqa: S104 - a comparison
            hosts |= {listen_host}
        ca = env_str(env, "FLEETWARD_TLS_CA")
        trace_url = env_str(env, "FLEETWARD_CONSOLE_TRACE_URL") or None
        if trace_url is not None and not _is_trace_url(trace_url):
            raise SettingsError(
                "FLEETWARD_CONSOLE_TRACE_URL must be an http(s) URL with a host, made of URL "
                "characters only (no spaces, quotes or <>), with {trace_id} in its path, "
                "query or fragment, e.g. https://jaeger.example.com/trace/{trace_id}; "
                f"got {trace_url!r}"
            )
        return cls(
            listen_addr=listen,
            actions_target=env_str(env, "FLEETWARD_TARGET", DEFAULT_TARGET),
            actions_ca=Path(ca) if ca else None,
            auth=auth,
            dev=dev,
            workspace_id=workspace,
            allowed_hosts=hosts,
            origins=env_list(env, "FLEETWARD_CONSOLE_ORIGINS", ""),
            trusted_proxies=env_list(env, "FLEETWARD_CONSOLE_TRUSTED_PROXIES", ""),
            live_per_user=_positive(env, "FLEETWARD_CONSOLE_LIVE_PER_USER", 20),
            live_total=_positive(env, "FLEETWARD_CONSOLE_LIVE_MAX", 2000),
            max_connections=_positive(env, "FLEETWARD_CONSOLE_MAX_CONNECTIONS", 2500),
            request_timeout_s=_positive(env, "FLEETWARD_CONSOLE_REQUEST_TIMEOUT_S", 10),
            trace_url=trace_url,
        )


# RFC 3986's unreserved, reserved and percent characters but the apostrophe, plus the
# placeholder's braces.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/?#@!$&()*+,;=%{}\[\]-]+")


def _is_trace_url(template: str) -> bool:
    """Whether ``template`` is an http(s) URL to a tracing backend with ``{trace_id}`` in it.

    Only characters a URL is made of (no whitespace, quotes, ``<>`` or backslash), an
    http(s) scheme and a host, and the placeholder after the host: a trace id in the
    host or user-info part could send the link somewhere else.
    """
    if not _URL_CHARACTERS.fullmatch(template) or "{trace_id}" not in template:
        return False
    parts = urllib.parse.urlsplit(template)
    return (
        parts.scheme in ("http", "https")
        and template.startswith(f"{parts.scheme}://")
        and bool(parts.hostname)
        and "{" not in parts.netloc
        and "}" not in parts.netloc
    )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = env_int(env, name, default)
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, got {value}")
    return value
