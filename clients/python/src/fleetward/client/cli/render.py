"""Turning messages into tables and key/value blocks for people, or JSON for scripts."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format, message, timestamp_pb2

from fleetward.actions.v1 import actions_pb2
from fleetward.client.results import SkippedTarget, action_result
from fleetward.policy.v1 import policy_pb2

# Control characters (C0, DEL, C1), invisible format characters (bidi overrides, zero
# widths), line separators, spaces other than the plain one, surrogates, private-use and
# unassigned code points: what could move the cursor, erase a line, reorder text or pass
# for something else.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs", "Cs", "Co", "Cn"})
# Letters and symbols that show as blank (Hangul fillers, the blank braille cell).
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# The zero-width non-joiner and joiner: Persian, Indic scripts and emoji need them.
_JOINERS = frozenset("\u200c\u200d")


def visible(text: str, *, keep_newlines: bool = False) -> str:
    r"""``text`` with every control or invisible character shown as an escape (``\x1b``).

    Everything the server sends is shown through this: a stored reason holding
    ``\x1b[1A\x1b[2K\r`` must not redraw the lines above it on someone's terminal.
    The escapes are for reading; ``--json`` gives the exact strings.
    """
    if text.isprintable() and not _BLANK.intersection(text):
        return text
    out = []
    for ch in text:
        shown = unicodedata.category(ch) not in _HIDDEN and ch not in _BLANK
        if shown or ch == " " or ch in _JOINERS or (ch == "\n" and keep_newlines):
            out.append(ch)
        else:
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            else:
                out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def to_json(value: message.Message) -> dict[str, Any]:
    """A message as JSON with proto field names (like grpcurl)."""
    return json_format.MessageToDict(value, preserving_proto_field_name=True)


def dumps(value: object, *, compact: bool = False) -> str:
    """JSON text: indented for documents, one line for streams."""
    if compact:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return json.dumps(value, indent=2, sort_keys=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table with left-aligned columns sized to their content."""
    cells = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """A key/value block, skipping empty values."""
    shown = [(k, _cell(v)) for k, v in pairs if _cell(v)]
    width = max((len(k) for k, _ in shown), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in shown)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return visible(str(value))


def when(stamp: timestamp_pb2.Timestamp) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SSZ``; empty when unset."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")


def enum_name(prefix: str, name: str) -> str:
    """``ACTION_STATUS_COMPLETED`` → ``completed``."""
    return name.removeprefix(prefix).lower()


def status_of(action: actions_pb2.Action) -> str:
    """The action status as a word."""
    return enum_name("ACTION_STATUS_", actions_pb2.ActionStatus.Name(action.status))


def target_of(scope: actions_pb2.Scope.ValueType, target_id: str) -> str:
    """``agent eng-code-1``, ``department support`` or ``fleet``."""
    word = enum_name("SCOPE_", actions_pb2.Scope.Name(scope))
    return f"{word} {target_id}".strip()


def action_block(action: actions_pb2.Action) -> str:
    """One action: its fields, then the agents it changed."""
    result = action_result(action)
    actor = action.actor.subject
    if action.actor.roles:
        actor += f" ({', '.join(action.actor.roles)})"
    block = fields(
        [
            ("action", action.action_id),
            ("type", action.action_type),
            ("target", target_of(action.scope, action.target_id)),
            ("status", status_of(action)),
            ("reason", action.reason),
            ("actor", actor),
            ("error", action.error_message),
            ("rollback of", action.rollback_of_action_id),
            ("rolled back by", action.rollback_action_id),
            ("can roll back", action.can_rollback),
            ("request id", action.request_id),
            ("policy", action.policy_version),
            ("trace id", action.trace_id),
            ("created", when(action.created_at)),
            ("completed", when(action.completed_at)),
            ("changed", f"{result.count}" if result.count else ""),
        ]
    )
    return "\n".join(filter(None, [block, changes_table(action)]))


def changes_table(action: actions_pb2.Action) -> str:
    """What an action (or a preview) changes: agents, budgets, skipped targets."""
    result = action_result(action)
    parts = []
    if result.agents:
        agent_rows = [
            (c.agent_id, f"{c.previous_status} → {c.new_status}", c.resume_at or "")
            for c in result.agents
        ]
        parts.append(table(("AGENT", "CHANGE", "RESUMES AT"), agent_rows))
        if result.truncated:
            parts.append(f"… and {result.count - len(result.agents)} more")
    budgets = [b for b in result.raw.get("budgets", []) if isinstance(b, dict)]
    if budgets:
        budget_rows = [
            (
                target_word(str(b.get("scope", "")), str(b.get("target_id", ""))),
                f"{_cents(b.get('previous_monthly_limit_cents'))} → "
                f"{_cents(b.get('new_monthly_limit_cents'))}",
            )
            for b in budgets
        ]
        parts.append(table(("BUDGET OF", "MONTHLY LIMIT (CENTS)"), budget_rows))
    if result.skipped:
        parts.append(table(("SKIPPED", "WHY"), [(s.target, _why(s)) for s in result.skipped]))
        if result.skipped_count > len(result.skipped):
            parts.append(f"… and {result.skipped_count - len(result.skipped)} more skipped")
    return "\n".join(parts)


def _why(skipped: SkippedTarget) -> str:
    if skipped.reason == "denied":
        return f"denied: you lack {skipped.permission or 'the permission'} on it"
    if skipped.reason == "superseded":
        if skipped.superseded_by == "retired":
            return "retired since"
        return f"changed later by {skipped.superseded_by}"
    if skipped.reason == "unchecked":
        return "joined the target after the permission check; left unchanged"
    return skipped.reason


def access_table(access: actions_pb2.TargetAccess) -> str:
    """``fleetward can-i --list``: every permission on one target, allowed or why not."""
    rows = [(p, "yes", "") for p in access.allowed]
    rows += [(d.permission, "no", denial_text(d)) for d in access.denied]
    return table(("PERMISSION", "ALLOWED", "WHY NOT"), sorted(rows))


def denial_text(denial: actions_pb2.AccessDenial) -> str:
    """A denial's reason, naming the denied agents it lists (one line, escaped)."""
    ids = list(denial.denied_agent_ids)
    if not ids:
        return visible(denial.reason)
    more = " …" if denial.denied_count > len(ids) else ""
    return visible(f"{denial.reason} (denied: {', '.join(ids)}{more})")


def _cents(value: object) -> str:
    if value is None:
        return "none"
    return str(int(value)) if isinstance(value, int | float) else str(value)


def target_word(scope: str, target_id: str) -> str:
    """``agent eng-code-1`` from a scope word and an id."""
    return f"{scope} {target_id}".strip()


def actions_table(actions: Iterable[actions_pb2.Action]) -> str:
    """Actions, one per row."""
    rows = [
        (
            a.action_id,
            when(a.created_at),
            a.action_type,
            target_of(a.scope, a.target_id),
            status_of(a),
            a.actor.subject,
        )
        for a in actions
    ]
    return table(("ACTION", "CREATED", "TYPE", "TARGET", "STATUS", "ACTOR"), rows)


def agents_table(agents: Iterable[actions_pb2.Agent]) -> str:
    """Agents, one per row."""
    rows = [
        (
            a.agent_id,
            a.department_id,
            enum_name("AGENT_STATUS_", actions_pb2.AgentStatus.Name(a.status)),
            when(a.paused_until),
            a.monthly_budget_cents if a.HasField("monthly_budget_cents") else "",
            a.effective_budget_cents if a.HasField("effective_budget_cents") else "",
            a.generation,
        )
        for a in agents
    ]
    headers = ("AGENT", "DEPARTMENT", "STATUS", "PAUSED UNTIL", "BUDGET", "EFFECTIVE", "GEN")
    return table(headers, rows)


def types_table(types: Iterable[actions_pb2.ActionType]) -> str:
    """The action catalog."""
    rows = [
        (
            t.name,
            ",".join(enum_name("SCOPE_", actions_pb2.Scope.Name(s)) for s in t.allowed_scopes),
            t.can_rollback,
            t.required_permission,
            t.description,
        )
        for t in types
    ]
    return table(("TYPE", "SCOPES", "ROLLBACK", "PERMISSION", "DESCRIPTION"), rows)


def event_line(event: actions_pb2.ActionEvent) -> str:
    """One watch event on one line."""
    a = event.action
    return "  ".join(
        visible(part)
        for part in [
            str(event.seq).rjust(6),
            when(event.created_at),
            event.event_type.ljust(18),
            a.action_type.ljust(13),
            target_of(a.scope, a.target_id).ljust(24),
            a.actor.subject,
            a.action_id,
        ]
    )


def decision_block(decision: policy_pb2.CheckResponse) -> str:
    """A policy decision."""
    return fields(
        [
            ("decision", "ALLOWED" if decision.allowed else "DENIED"),
            (
                "reason",
                enum_name("DECISION_REASON_", policy_pb2.DecisionReason.Name(decision.reason)),
            ),
            ("roles", ", ".join(decision.roles)),
            ("rule", decision.matched_rule),
            ("policy", decision.policy_version),
            ("decision id", decision.decision_id),
        ]
    )


def policy_info_block(info: policy_pb2.GetPolicyInfoResponse) -> str:
    """The served policy, then one line per warning of its load."""
    block = fields(
        [
            ("policy", info.policy_version),
            ("loaded", when(info.loaded_at)),
            ("rules", info.rule_count),
            ("role links", info.role_link_count),
            ("last reload", when(info.last_reload_at)),
            ("reload error", info.last_reload_error),
        ]
    )
    return "\n".join([block, *(f"warning: {visible(w)}" for w in info.warnings)])
