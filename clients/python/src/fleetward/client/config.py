"""How a client reaches Fleetward: target, credentials, TLS, deadline and retry policy."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ClientConfig", "RetryPolicy", "TlsConfig", "TokenProvider"]

TokenProvider = Callable[[], str]
"""A callable returning a bearer token; called before every attempt (so it may refresh)."""

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_POLICY_TARGET = "127.0.0.1:50052"


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff for retryable failures, bounded by the call's deadline.

    The delay before retry ``n`` (1-based) is ``min(max_backoff, initial_backoff *
    multiplier ** (n - 1))``, reduced by a random fraction of up to ``jitter`` (``1.0`` =
    "full jitter", ``0.0`` = none). A retry whose delay would outlast the deadline is not
    attempted: the last error is raised instead.

    Attributes:
        max_attempts: Attempts in total, including the first (1 disables retries).
        initial_backoff: Delay before the first retry, in seconds.
        max_backoff: Upper bound of any delay, in seconds.
        multiplier: Growth factor of the delay per retry.
        jitter: Fraction (0..1) of the delay that is randomised away.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The delay in seconds before retry number ``retry`` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        fraction = (rng or random).random()
        return base * (1.0 - self.jitter * fraction)


@dataclass(frozen=True)
class TlsConfig:
    """TLS for the channel: server verification and, optionally, a client certificate (mTLS).

    Attributes:
        root_certificates: PEM CA bundle; ``None`` uses the system roots.
        certificate_chain: PEM client certificate chain (mTLS), with ``private_key``.
        private_key: PEM private key of the client certificate.
        server_name: Overrides the name checked against the server certificate.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        *,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> TlsConfig:
        """Read the PEM files; any of them may be omitted."""

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return cls(read(ca), read(cert), read(key), server_name)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to reach one Fleetward service.

    Attributes:
        target: ``host:port`` of the service (actions ``127.0.0.1:50051`` by default).
        token: A bearer token, or a callable returning one (called before every attempt,
            so short-lived tokens can be refreshed). ``None`` sends no credentials.
        tls: TLS settings; ``None`` means a plaintext channel.
        default_deadline: Seconds one logical call may take, retries included; ``None``
            for no deadline. Each method also takes a ``deadline`` override.
        retry: Backoff policy for retryable failures.
        options: Extra gRPC channel arguments.
    """

    target: str = DEFAULT_TARGET
    token: str | TokenProvider | None = None
    tls: TlsConfig | None = None
    default_deadline: float | None = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    options: tuple[tuple[str, str | int], ...] = ()

    def bearer_token(self) -> str | None:
        """The token to send now (calls the provider when one is configured)."""
        if self.token is None or isinstance(self.token, str):
            return self.token
        return self.token()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        target_variable: str = "FLEETWARD_TARGET",
        default_target: str = DEFAULT_TARGET,
    ) -> ClientConfig:
        """Build a config from ``FLEETWARD_TARGET``, ``FLEETWARD_TOKEN`` and ``FLEETWARD_TLS_CA``.

        Args:
            env: The environment to read (``os.environ`` by default).
            target_variable: The variable naming the target (``FLEETWARD_POLICY_TARGET``
                for the policy service).
            default_target: Used when the variable is unset.
        """
        env = os.environ if env is None else env
        ca = env.get("FLEETWARD_TLS_CA")
        return cls(
            target=env.get(target_variable) or default_target,
            token=env.get("FLEETWARD_TOKEN") or None,
            tls=TlsConfig.from_files(ca=ca) if ca else None,
        )
