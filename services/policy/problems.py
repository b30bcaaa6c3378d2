"""One finding of the policy validator, printed as ``file:line: severity: message``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """A problem in a policy file."""

    file: str
    line: int
    severity: Severity
    message: str

    @classmethod
    def error(cls, file: str, line: int, message: str) -> Problem:
        """An error: the files must not be loaded."""
        return cls(file, line, "error", message)

    @classmethod
    def warning(cls, file: str, line: int, message: str) -> Problem:
        """A warning: loadable, but probably not what was meant."""
        return cls(file, line, "warning", message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"
