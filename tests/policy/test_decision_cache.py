"""A decider remembers its answers: per policy version, bounded, never an error."""

from __future__ import annotations

import pytest

from services.policy import engine
from services.policy.engine import CasbinDecider, Decision, Reason


class Counting(CasbinDecider):
    """A decider whose evaluation is counted (and can be made to fail)."""

    def __init__(self) -> None:
        super().__init__(enforcer=None, lines=())
        self.evaluations = 0
        self.fail = False

    def _decide(
        self, subject: str, workspace: str, action: str, resource: str, *, explain: bool
    ) -> Decision:
        self.evaluations += 1
        if self.fail:
            raise RuntimeError("matcher failed")
        return Decision(
            subject == "bob", Reason.ALLOWED if subject == "bob" else Reason.NO_MATCHING_RULE
        )


def test_a_repeated_question_is_evaluated_once() -> None:
    decider = Counting()
    first = decider.decide("bob", "ws", "actions:read", "fleet", explain=False)
    again = decider.decide("bob", "ws", "actions:read", "fleet", explain=False)
    assert first == again
    assert first.allowed
    assert decider.evaluations == 1
    decider.decide("bob", "ws", "actions:read", "fleet", explain=True)  # another question
    decider.decide("carol", "ws", "actions:read", "fleet", explain=False)
    assert decider.evaluations == 3


def test_an_evaluation_error_is_not_remembered() -> None:
    decider = Counting()
    decider.fail = True
    for _ in range(2):
        with pytest.raises(RuntimeError):
            decider.decide("bob", "ws", "actions:read", "fleet", explain=False)
    assert decider.evaluations == 2


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "DECISION_CACHE_SIZE", 10)
    decider = Counting()
    for i in range(25):
        decider.decide(f"user-{i}", "ws", "actions:read", "fleet", explain=False)
    assert len(decider._answers) <= 10
