"""Who a token may name (docs/architecture.md §8): the one subject rule of both services,
and the service and system subjects no user token may carry or resemble.
"""

from __future__ import annotations

import functools
import unicodedata

from confusable_homoglyphs import confusables

from services.common.names import MAX_SUBJECT, SYSTEM_PREFIX

SERVICE_PREFIX = "svc:"
RESERVED_PREFIXES = (SERVICE_PREFIX, SYSTEM_PREFIX)


def is_reserved(subject: str) -> bool:
    """Whether ``subject`` names a service or a system actor, or looks as if it did.

    Compared after NFKC normalisation and case folding (``SVC:x``, a full-width colon),
    then character by character against Unicode's confusables (TR39): ``svc:actions``
    spelled with a Cyrillic dze for the ``s``, ``system:x`` with a modifier-letter colon
    (U+A789), or ``systern:x`` is reserved too. No user token can carry a subject that a
    person reading the audit log would take for one of ours.
    """
    folded = unicodedata.normalize("NFKC", subject).casefold()
    return any(_resembles(folded, 0, prefix) for prefix in RESERVED_PREFIXES)


def _resembles(text: str, at: int, prefix: str) -> bool:
    """Whether ``text[at:]`` starts with something that looks like ``prefix``."""
    if not prefix:
        return True
    return any(
        text.startswith(glyph, at) and _resembles(text, at + len(glyph), prefix[1:])
        for glyph in _look_alikes(prefix[0])
    )


@functools.cache
def _look_alikes(char: str) -> tuple[str, ...]:
    """``char`` and everything Unicode lists as confusable with it, normalised like a
    subject (some are two characters: ``rn`` for ``m``).
    """
    glyphs = {char}
    for key in {char, char.upper()}:
        for entry in confusables.confusables_data.get(key, ()):
            glyph = entry["c"].strip("\u200e\u200f")  # direction marks around RTL glyphs
            glyphs.add(unicodedata.normalize("NFKC", glyph).casefold())
    return tuple(sorted(glyphs - {""}))


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be a policy subject, or None.

    One rule for both services: the action service refuses such a token as
    UNAUTHENTICATED, so the policy service (which refuses it as INVALID_ARGUMENT) never
    sees one, and the audit log never stores a subject that prints as another.
    """
    if not subject:
        return "required"
    if len(subject) > MAX_SUBJECT:
        return f"at most {MAX_SUBJECT} characters"
    if subject != subject.strip() or not subject.isprintable():
        return "must be printable, without control characters or surrounding whitespace"
    return None
