"""Free text that people read later (a reason): what it may hold, and what counts as said.

A reason is shown on terminals, in the console and in audit exports, long after it was
written. So the characters that change how the text around them is shown are refused:
controls (an escape sequence can redraw a terminal), bidirectional overrides and
isolates (they reorder what a reader sees, "Trojan Source"), zero-width and other
invisible format characters, line and paragraph separators, and long stacks of combining
marks (they paint over neighbouring lines). The joiners and direction marks that
Persian, Arabic, Indic scripts and emoji need are kept. A required reason must also say
something: characters that show as nothing (spaces, fillers) do not count.
"""

from __future__ import annotations

import unicodedata

# Format characters that writing needs: zero-width non-joiner and joiner (Persian,
# Indic scripts, emoji sequences), left-to-right, right-to-left and Arabic letter marks.
_NEEDED_FORMAT = frozenset("\u200c\u200d\u200e\u200f\u061c")
# Letters and symbols that show as blank: the Hangul fillers and the blank braille cell.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Combining marks one character may carry (Vietnamese stacks two; an emoji one).
MAX_COMBINING_RUN = 4


def text_problem(text: str) -> str | None:
    """Why ``text`` may not be stored for people to read, or None when it may."""
    run = 0
    for ch in text:
        if ch in "\t\n":
            run = 0
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            return "must not contain control characters (tab and newline may)"
        if category in ("Zl", "Zp"):
            return "must not contain line or paragraph separators (newline may)"
        if category == "Cf" and ch not in _NEEDED_FORMAT:
            return (
                "must not contain invisible formatting characters "
                f"(U+{ord(ch):04X}: bidirectional controls, zero-width spaces, BOM)"
            )
        if category in ("Mn", "Me"):
            run += 1
            if run > MAX_COMBINING_RUN:
                return f"must not stack more than {MAX_COMBINING_RUN} combining marks"
        else:
            run = 0
    return None


def visible_length(text: str) -> int:
    """How many characters of ``text`` show as something: letters, digits, punctuation
    and symbols, not spaces, marks, formatting or blank fillers.
    """
    return sum(1 for ch in text if unicodedata.category(ch)[0] in "LNPS" and ch not in _BLANK)
