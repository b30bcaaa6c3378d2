"""The pycasbin enforcer a decider wraps, built once per load and never modified after.

``build_enforcer`` feeds already validated lines to pycasbin (it never reads the files
itself), parses the matcher once instead of on every ``enforce`` and registers
``workspace_matches`` so a ``g`` binding in ``*`` holds in every workspace
(docs/architecture.md §7). Deciding with the result is ``engine.py``'s job.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable
from typing import Any

import casbin
from casbin.model import Model
from casbin.persist.adapter import Adapter
from casbin.util.expression import SimpleEval

from services.common import names
from services.policy.files import PolicyFiles
from services.policy.validate import PolicyLine

# pycasbin logs the whole model and policy on every load (before its own "disable") and
# every denied request at WARNING; the decision log covers decisions, so keep it quiet.
for _name in ("casbin", "casbin.policy", "casbin.enforcer", "casbin.role"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def workspace_matches(requested: str, bound: str) -> bool:
    """Domain matching for ``g``: a binding in ``*`` holds in every workspace."""
    return bound == names.ANY_WORKSPACE or requested == bound


class _LinesAdapter(Adapter):  # type: ignore[misc]
    """Feeds already validated lines to pycasbin (so it never reads the files itself).

    Each rule is the line's own ``fields`` tuple, not a list copy: pycasbin only reads
    rules (the enforcer is never modified), so its model, the decision index and the
    line numbers share one tuple per line. The lines are dropped once loaded, since the
    enforcer keeps its adapter for as long as it serves (docs/architecture.md §7).
    """

    def __init__(self, lines: Iterable[PolicyLine]) -> None:
        self._lines: Iterable[PolicyLine] | None = lines

    def load_policy(self, model: Any) -> None:
        if self._lines is None:  # the lines are gone: a second load would load nothing
            raise RuntimeError("a policy is loaded once; build a new enforcer to reload")
        for line in self._lines:
            model.model[line.ptype[0]][line.ptype].policy.append(line.fields)
        self._lines = None


class _QuietModel(Model):  # type: ignore[misc]
    """pycasbin's model without ``print_policy``, which formats the whole policy into one
    string (about 20 MB at 100,000 lines) before its logger drops it.
    """

    def print_policy(self) -> None:
        """Log nothing: the decision log and ``GetPolicyInfo`` describe the policy."""


class _ParsedOnceEnforcer(casbin.Enforcer):  # type: ignore[misc]
    """An enforcer that parses its matcher once instead of on every ``enforce``.

    pycasbin calls ``ast.parse`` per enforce. On CPython 3.11 ``ast.parse`` in two threads
    at once can fail ("AST constructor recursion depth mismatch"), which a reload building
    its enforcer in a worker thread would turn into spurious EVALUATION_ERROR denies on
    the event loop. Parsing once (during the probe, before publication) removes that race
    and the per-call parsing cost.
    """

    def _get_expression(self, expr: str, functions: Any = None) -> Any:
        cache: dict[str, Any] = self.__dict__.setdefault("_parsed_matchers", {})
        prepared = re.sub(r"!(?!=)", "not ", expr.replace("&&", "and").replace("||", "or"))
        tree = cache.get(prepared)
        if tree is None:
            statement = ast.parse(prepared.strip()).body[0]
            if not isinstance(statement, ast.Expr):
                raise ValueError(f"the matcher is not an expression: {expr!r}")
            tree = cache[prepared] = statement.value
        evaluator = SimpleEval("", functions)
        evaluator.expr = prepared
        evaluator.ast_parsed_value = tree
        return evaluator


def build_enforcer(files: PolicyFiles, lines: Iterable[PolicyLine]) -> Any:
    """A new ``casbin.Enforcer`` from the model text and validated lines, with ``*`` domains."""
    model = _QuietModel()
    model.load_model_from_text(files.model_text)
    enforcer = _ParsedOnceEnforcer(model, _LinesAdapter(lines))
    if "g" in enforcer.get_model().model and "g" in enforcer.rm_map:
        enforcer.add_named_domain_matching_func("g", workspace_matches)
    return enforcer
