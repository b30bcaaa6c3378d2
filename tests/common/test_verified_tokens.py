"""VerifiedTokens: a verified token is remembered until its exp, a refused one never."""

from __future__ import annotations

import time

import pytest

from services.common.status import ServiceError, unauthenticated
from services.common.tokens import Principal, VerifiedTokens


class CountingVerifier:
    """Accepts tokens named ``ok:<exp>``; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def verify(self, token: str) -> Principal:
        self.calls += 1
        kind, _, exp = token.partition(":")
        if kind != "ok":
            raise unauthenticated("invalid token")
        return Principal(subject=f"user-{exp}", claims={"sub": "u", "exp": float(exp)})


def test_a_verified_token_is_checked_once_until_it_expires() -> None:
    inner = CountingVerifier()
    tokens = VerifiedTokens(inner.verify)
    later = f"ok:{time.time() + 60}"
    assert tokens.verify(later).subject == tokens.verify(later).subject
    assert inner.calls == 1
    expired = f"ok:{time.time() - 1}"  # the wrapped verifier would refuse it; here it shows
    tokens.verify(expired)  # that an entry past its exp is verified again, every time
    tokens.verify(expired)
    assert inner.calls == 3


def test_a_refused_token_is_refused_every_time() -> None:
    inner = CountingVerifier()
    tokens = VerifiedTokens(inner.verify)
    for _ in range(3):
        with pytest.raises(ServiceError):
            tokens.verify("forged")
    assert inner.calls == 3


def test_the_cache_is_bounded() -> None:
    inner = CountingVerifier()
    tokens = VerifiedTokens(inner.verify, size=4)
    exp = time.time() + 60
    for i in range(10):
        tokens.verify(f"ok:{exp + i}")
    assert len(tokens._verified) <= 4
