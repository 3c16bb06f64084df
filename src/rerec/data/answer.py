"""Defensive parsing of the model's answer, in one of two formats.

``boxed`` (ReRec's own): the content of the last ``\\boxed{...}``. The candidate task expects one title
in the box (taken whole); the open task expects several titles in one box, separated by ``;``.

``sep`` (RecBench+'s): titles separated by ``[SEP]``, as the benchmark's prompts ask for
(``Heat (1995) [SEP] Casino (1995)``); see :func:`parse_sep_answer`.

Nothing here trusts the text: unbalanced braces, empty boxes, empty lists and junk all parse to
``None`` (an unparsable answer), which the reward turns into the format penalty.

``lenient`` reading (:func:`read_answer`, ``reward.answer_reading``) first tries the format the prompt
asked for, then what instruct models write instead (a box, a ``[SEP]`` list, a bulleted or numbered
list, titles one per line): a small chat model that answers with a list still gets its
recommendation read, while the format reward stays for the asked format.
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
AnswerReading = Literal["strict", "lenient"]
ANSWER_READINGS: tuple[str, ...] = ("strict", "lenient")
# "- X", "* X", "• X", "1. X", "1) X", "(1) X" at the start of a line.
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*\u2022]|\(?\d{1,3}[.)])\s+(?=\S)")
# A title ends at its year: "Heat (1995) - a heist film" is "Heat (1995)".
_TITLE_WITH_YEAR_RE = re.compile(r"^(.*?\(\d{4}\))")


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


def _clean_title(line: str) -> str:
    """A list line's title: marker, markdown emphasis and quotes removed, cut after its ``(year)``."""
    text = _LIST_MARKER_RE.sub("", line, count=1).strip().replace("**", "").replace("__", "")
    text = strip_wrapping_quotes(text)
    m = _TITLE_WITH_YEAR_RE.match(text)
    return strip_wrapping_quotes(m.group(1)) if m else text.rstrip(".").strip()


def parse_list_answer(text: str, max_titles: int | None = None) -> list[str] | None:
    """Titles of an answer written as a list, or ``None``.

    A bulleted or numbered list (``- A``, ``1. A``): its items, in order. Without list markers, the
    lines that end in a ``(year)`` are titles written one per line. Each title is cut after its year
    (``"Heat (1995) - a heist film"`` → ``"Heat (1995)"``); markdown ``**`` and surrounding quotes are
    dropped. A text with neither, or a list longer than :data:`MAX_ANSWER_CHARS`, gives ``None``.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    items = [line for line in lines if _LIST_MARKER_RE.match(line)]
    if items:
        titles = [_clean_title(line) for line in items]
    else:  # no markers: the lines that are a title ending in its year
        titles = [t for t in map(_clean_title, lines) if _TITLE_WITH_YEAR_RE.match(t) and t.endswith(")")]
    titles = [t for t in titles if t]
    if not titles or sum(map(len, titles)) > MAX_ANSWER_CHARS:
        return None
    return titles if max_titles is None else titles[:max_titles]


def read_answer(
    text: str, max_titles: int | None = 1, answer_format: AnswerFormat = "boxed",
    reading: AnswerReading = "strict",
) -> tuple[list[str] | None, bool]:
    """``(titles, as_asked)``: the titles of ``text`` and whether they were written in ``answer_format``.

    ``strict``: :func:`parse_answer` only. ``lenient``: when the asked format does not parse, the other
    formats in turn — a ``\\boxed{}`` (one title for the candidate task, else ``;``-separated), a
    ``[SEP]`` list, a bulleted/numbered list or titles one per line (:func:`parse_list_answer`), a single
    line — keeping the first ``max_titles``. ``as_asked`` is True only for the asked format, so a format
    reward can stay with what the prompt asked for.
    """
    if reading not in ANSWER_READINGS:
        raise ValueError(f"answer reading must be one of {ANSWER_READINGS}, got {reading!r}")
    titles = parse_answer(text, max_titles, answer_format)
    if titles is not None or reading == "strict":
        return titles, titles is not None
    other: AnswerFormat = "sep" if answer_format == "boxed" else "boxed"
    if other == "boxed" or SEP in text:
        titles = parse_answer(text, max_titles, other)
    if titles is None:
        titles = parse_list_answer(text, max_titles)
    if titles is None:
        titles = parse_sep_answer(text, max_titles)  # a single line: a list of one
    return titles, False
