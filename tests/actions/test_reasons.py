"""A reason is read by people later, on terminals, pages and exports: what changes how
the text around it is shown is refused, and a required reason must say something.

Every case used to be stored (shown with validate_only here; the attack recorded them
as denied rows): bidirectional overrides that reorder what a reader sees, zero-width and
filler characters that make an empty reason pass the length check, and stacks of
combining marks that paint over neighbouring lines.
"""

from __future__ import annotations

import grpc
import pytest

from tests.actions.helpers import Api, details
from tests.conftest import NewWorkspace

REFUSED = {
    "bidi override": "approved \u202eby ops\u202c",
    "bidi isolate": "ok \u2066hidden\u2069 ok",
    "zero-width space": "rout\u200bine",
    "byte order mark": "\ufeffroutine",
    "line separator": "first\u2028second",
    "paragraph separator": "first\u2029second",
    "stacked marks": "a" + "\u0301" * 900,
    "only Hangul fillers": "\u3164\u3164\u3164",
    "only zero-width spaces": "\u200b\u200b\u200b",
    "only spaces and a filler": "  \u2800 \u3164  ",
    "two visible characters": "o k",
    "escape sequence": "done\x1b[2K",
}
ACCEPTED = {
    "persian with zero-width non-joiner": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    "emoji with joiner and variation selector": "\U0001f469\u200d\U0001f4bb deploy \u2764\ufe0f",
    "vietnamese": "T\u1ea1m d\u1eebng agent",
    "arabic with a direction mark": "\u062a\u0648\u0642\u0641 \u200fagent",
    "tabs and newlines": "line one\n\tline two",
}


@pytest.mark.parametrize("reason", REFUSED.values(), ids=REFUSED.keys())
async def test_a_reason_that_hides_or_reorders_text_is_refused(
    api: Api, new_workspace: NewWorkspace, reason: str
) -> None:
    ws = await new_workspace()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute(
            "bob", ws.id, "pause_agent", target="eng-code-1", reason=reason, validate_only=True
        )
    failure = details(err.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in failure.field_violations


@pytest.mark.parametrize("reason", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_reasons_in_any_script_are_accepted(
    api: Api, new_workspace: NewWorkspace, reason: str
) -> None:
    ws = await new_workspace()
    done = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", reason=reason)
    assert done.reason == reason
