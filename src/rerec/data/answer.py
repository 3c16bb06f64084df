"""Defensive parsing of the model's answer: the content of the last ``\\boxed{...}``.

The candidate task expects one title in the box (taken whole); the open task expects several titles in
one box, separated by ``;``. Nothing here trusts the text: unbalanced braces, empty boxes and junk all parse to
``None`` (an unparsable answer), which the reward turns into the format penalty.
"""

from __future__ import annotations

BOX_OPEN = "\\boxed{"
TITLE_SEPARATOR = ";"
MAX_ANSWER_CHARS = 2000  # a box longer than this is junk, not an answer


def last_boxed_span(text: str) -> tuple[int, int] | None:
    """``(start of "\\boxed{", index after its "}")`` of the last balanced box; ``None`` when none closes.

    Several boxes: the last one wins (the model may draft, then correct itself). Braces inside the box
    must balance; a box that is never closed does not count (an earlier, complete one is used).
    """
    start = text.rfind(BOX_OPEN)
    while start != -1:
        depth, i = 1, start + len(BOX_OPEN)
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            return start, i
        start = text.rfind(BOX_OPEN, 0, start)
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` in ``text`` (see :func:`last_boxed_span`)."""
    span = last_boxed_span(text)
    return None if span is None else text[span[0] + len(BOX_OPEN) : span[1] - 1]


def parse_answer(text: str, max_titles: int | None = 1) -> list[str] | None:
    """Titles recommended in ``text``, or ``None`` when the answer cannot be parsed.

    Args:
        text: The completion.
        max_titles: 1 for the candidate task: the whole box is one title (real titles may contain
            ``;``; a hedged ``A; B`` then matches no item: no recommendation reward, and with
            ``reward.require_candidate`` the unparsable penalty).
            ``None`` or K for the open task: titles separated by ``;``, extra ones beyond K dropped.
    """
    boxed = last_boxed(text)
    if boxed is None or len(boxed) > MAX_ANSWER_CHARS:
        return None
    if max_titles == 1:
        return [boxed.strip()] if boxed.strip() else None
    titles = [t.strip() for t in boxed.split(TITLE_SEPARATOR)]
    titles = [t for t in titles if t]
    if not titles:
        return None
    return titles if max_titles is None else titles[:max_titles]
