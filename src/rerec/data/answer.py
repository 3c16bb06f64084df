"""Defensive parsing of the model's answer, in one of two formats.

``boxed`` (ReRec's own): the content of the last ``\\boxed{...}``. The candidate task expects one title
in the box (taken whole); the open task expects several titles in one box, separated by ``;``.

``sep`` (RecBench+'s): titles separated by ``[SEP]``, as the benchmark's prompts ask for
(``Heat (1995) [SEP] Casino (1995)``); see :func:`parse_sep_answer`.

Nothing here trusts the text: unbalanced braces, empty boxes, empty lists and junk all parse to
``None`` (an unparsable answer), which the reward turns into the format penalty.
"""

from __future__ import annotations

import re
from typing import Literal

from rerec.data.matching import strip_wrapping_quotes

BOX_OPEN = "\\boxed{"
TITLE_SEPARATOR = ";"
SEP = "[SEP]"
MAX_ANSWER_CHARS = 2000  # a box (or a [SEP] list) longer than this is junk, not an answer
_BOX_OPEN_RE = re.compile(re.escape(BOX_OPEN))
_BRACE_RE = re.compile(r"[{}]")
AnswerFormat = Literal["boxed", "sep"]
ANSWER_FORMATS: tuple[str, ...] = ("boxed", "sep")


def last_boxed_span(text: str) -> tuple[int, int] | None:
    """``(start of "\\boxed{", index after its "}")`` of the last balanced box; ``None`` when none closes.

    Several boxes: the last one wins (the model may draft, then correct itself). Braces inside the box
    must balance; a box that is never closed does not count (an earlier, complete one is used).
    One pass over the braces matches each ``{`` with its ``}`` (linear in the text's length: scanning
    forward from every unclosed box instead would be quadratic on hostile text).
    """
    starts = [m.start() for m in _BOX_OPEN_RE.finditer(text)]
    if not starts:
        return None
    closes: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closes[stack.pop()] = m.start()
    for start in reversed(starts):
        end = closes.get(start + len(BOX_OPEN) - 1)
        if end is not None:
            return start, end + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` in ``text`` (see :func:`last_boxed_span`)."""
    span = last_boxed_span(text)
    return None if span is None else text[span[0] + len(BOX_OPEN) : span[1] - 1]


def parse_sep_answer(text: str, max_titles: int | None = None) -> list[str] | None:
    """Titles of a ``[SEP]``-separated answer, or ``None`` when it holds no list.

    With ``[SEP]`` in the text, the parts between separators are the titles, except that the first part
    keeps only its last non-empty line and the last part only its first: text before the list
    (reasoning, "Here are my picks:") and after it ("Enjoy!") is not a title, and a list written one
    title per line (``"A [SEP]\\nB"``) loses none (but after a trailing ``[SEP]``, the next line is read
    as a title). Without ``[SEP]``, a single line is a list of one
    title, and anything longer is not a list. Each title is stripped of spaces and of quotes
    around it; empty titles are dropped (``"A [SEP] [SEP] B"`` is ``["A", "B"]``); no title left, or a
    list longer than :data:`MAX_ANSWER_CHARS`, gives ``None``.

    Args:
        text: The completion.
        max_titles: Keep the first K titles; ``None`` keeps all.
    """
    if SEP in text:
        parts = text.split(SEP)
        first, last = parts[0].strip().splitlines(), parts[-1].strip().splitlines()
        parts[0], parts[-1] = (first[-1] if first else ""), (last[0] if last else "")
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        parts = lines if len(lines) == 1 else []
    titles = [t for t in (strip_wrapping_quotes(p) for p in parts) if t]
    if not titles or sum(map(len, titles)) > MAX_ANSWER_CHARS:
        return None
    return titles if max_titles is None else titles[:max_titles]


def parse_answer(
    text: str, max_titles: int | None = 1, answer_format: AnswerFormat = "boxed"
) -> list[str] | None:
    """Titles recommended in ``text``, or ``None`` when the answer cannot be parsed.

    Args:
        text: The completion.
        max_titles: 1 for the candidate task: the whole box is one title (real titles may contain
            ``;``; a hedged ``A; B`` then matches no item: no recommendation reward, and with
            ``reward.require_candidate`` the unparsable penalty).
            ``None`` or K for the open task: titles separated by ``;``, extra ones beyond K dropped.
        answer_format: ``"boxed"`` (above) or ``"sep"``: :func:`parse_sep_answer`, first ``max_titles``.
    """
    if answer_format == "sep":
        return parse_sep_answer(text, max_titles)
    if answer_format != "boxed":
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
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
