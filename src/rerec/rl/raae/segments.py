"""Reasoning segments of a completion and the titles they mention (RAAE).

A completion is split into *segments* — lines (default), paragraphs (separated by blank lines) or
sentences — given as exact character spans ``(start, end)`` of the text, whitespace trimmed, empty ones
dropped. The *answer line* (every line touched by the last balanced ``\\boxed{...}``, the box
:func:`rerec.data.answer.parse_answer` reads) is never part of a segment.

Title mentions are found by literal, word-aligned phrase matching (:class:`PhraseIndex`): text and
phrases are cut into word tokens (``\\w+``) and single punctuation characters, compared case-folded
with curly quotes folded to straight ones, whitespace ignored. So regex metacharacters in titles
(``Se7en (1995)``, ``Face/Off``, ``What's Up, Doc?``) are plain characters, and a title is never found
inside a longer word (``Alien`` is not in ``Aliens``). A text without spaces between words (Chinese,
Japanese) is one word to this tokenisation, so a title inside such a run is not found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rerec.data.answer import last_boxed_span

SegmentBy = Literal["line", "paragraph", "sentence"]
SEGMENT_MODES: tuple[str, ...] = ("line", "paragraph", "sentence")

Span = tuple[int, int]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# A sentence ends at . ! ? or … followed by whitespace; newlines always end one.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?\u2026])\s+|\n\s*")
_WORD = re.compile(r"\w+|[^\w\s]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'", "\u00b4": "'",
                         "\u201c": '"', "\u201d": '"'})
_YEAR_SUFFIX = re.compile(r"\s*\(\s*(\d{4})\s*\)\s*$")
_YEAR_AFTER = re.compile(r"\s*\(\s*(\d{4})\s*\)")
_LINE_BREAK = re.compile(r"\n")
_ALT_TITLE_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")
# Articles MovieLens moves behind a comma ("Breakfast Club, The", "Misérables, Les").
_ARTICLES = ("the", "a", "an", "les", "la", "le", "l'", "el", "il", "lo", "los", "las", "das", "der", "die")
_TRAILING_ARTICLE = re.compile(r"^(.*\S)\s*,\s*(" + "|".join(map(re.escape, _ARTICLES)) + r")$", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(r"^(" + "|".join(map(re.escape, _ARTICLES)) + r")(?:\s+|(?<=')\s*)(\S.*)$",
                              re.IGNORECASE)
#: Titles with fewer alphanumeric characters than this ("It", "Up", "Ran") are matched case-sensitively,
#: otherwise every "it" of the text would count as a mention.
MIN_CASELESS_TITLE_CHARS = 4


# ---------------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------------


def last_box_span(text: str) -> Span | None:
    """Character span of the last balanced ``\\boxed{...}`` (same box as :func:`~rerec.data.answer.last_boxed`).

    Returns ``(start of "\\boxed{", index after its closing "}")``, or ``None`` when no box closes.
    """
    return last_boxed_span(text)


def answer_line_span(text: str) -> Span | None:
    """Span of the whole line(s) holding the last balanced box (newlines excluded), or ``None``."""
    box = last_box_span(text)
    if box is None:
        return None
    line_start = text.rfind("\n", 0, box[0]) + 1
    line_end = text.find("\n", box[1])
    return line_start, len(text) if line_end == -1 else line_end


def _trimmed(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _split(text: str, start: int, end: int, breaks: re.Pattern[str]) -> list[Span]:
    spans, pos = [], start
    for m in breaks.finditer(text, start, end):
        span = _trimmed(text, pos, m.start())
        if span:
            spans.append(span)
        pos = m.end()
    span = _trimmed(text, pos, end)
    if span:
        spans.append(span)
    return spans


def split_segments(text: str, by: SegmentBy = "line") -> list[Span]:
    """Reasoning segments of ``text`` as ``(start, end)`` character spans, in text order.

    Args:
        text: The decoded completion.
        by: ``"line"`` (split at newlines), ``"paragraph"`` (split at blank lines) or ``"sentence"``
            (split after ``. ! ? …`` followed by whitespace, and at newlines; an abbreviation such as
            ``"Dr. No"`` is split too).

    The answer line (see :func:`answer_line_span`) is cut out before splitting, so a paragraph holding
    it yields its part before and its part after the answer line as separate segments. Spans are
    trimmed of surrounding whitespace; empty and whitespace-only segments are dropped.
    """
    if by not in SEGMENT_MODES:
        raise ValueError(f"segment_by must be one of {SEGMENT_MODES}, got {by!r}")
    breaks = {"line": _LINE_BREAK, "paragraph": _PARAGRAPH_BREAK, "sentence": _SENTENCE_BREAK}[by]
    answer = answer_line_span(text)
    pieces = [(0, len(text))] if answer is None else [(0, answer[0]), (answer[1], len(text))]
    return [span for s, e in pieces for span in _split(text, s, e, breaks)]


def overlapping(spans: Sequence[Span], targets: Iterable[Span]) -> list[bool]:
    """For each span of ``spans``: does it overlap (share at least one character with) any target?"""
    targets = list(targets)
    return [any(s < te and ts < e for ts, te in targets) for s, e in spans]


# ---------------------------------------------------------------------------------------------------
# Literal phrase search
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Words:
    """A text cut into word tokens: folded (for caseless comparison), raw, and character spans."""

    folded: list[str]
    raw: list[str]
    starts: list[int]
    ends: list[int]

    @classmethod
    def of(cls, text: str) -> Words:
        """Tokenise ``text`` (``\\w+`` runs and single punctuation characters, quotes folded)."""
        matches = list(_WORD.finditer(text))
        raw = [m.group().translate(_QUOTES) for m in matches]
        return cls([w.casefold() for w in raw], raw, [m.start() for m in matches], [m.end() for m in matches])

    def __len__(self) -> int:
        return len(self.raw)


def _phrase_words(phrase: str) -> list[str]:
    return [w.translate(_QUOTES) for w in _WORD.findall(phrase)]


class PhraseIndex:
    """Finds literal phrases in texts, word-aligned, whitespace- and (by default) case-insensitive.

    Phrases are indexed by their first word, so a search costs one dictionary look-up per word of the
    text plus a comparison per candidate phrase starting with that word — fast with many thousands of
    phrases (catalog titles, person names).

    Args:
        phrases: ``(phrase, key)`` pairs; a key may have several phrases and a phrase several keys.
        case_sensitive: Predicate on a phrase: compare that phrase with its original case (default:
            every phrase caseless).
    """

    def __init__(
        self, phrases: Iterable[tuple[str, Hashable]], case_sensitive: Callable[[str], bool] | None = None
    ) -> None:
        # (folded words, raw words when compared with case else None) -> keys
        entries: dict[tuple[tuple[str, ...], tuple[str, ...] | None], list[Hashable]] = {}
        for phrase, key in phrases:
            raw = tuple(_phrase_words(phrase))
            if not raw:
                continue
            exact = raw if case_sensitive is not None and case_sensitive(phrase) else None
            keys = entries.setdefault((tuple(w.casefold() for w in raw), exact), [])
            if key not in keys:
                keys.append(key)
        self._by_first: dict[str, list[tuple[tuple[str, ...], tuple[str, ...] | None, tuple[Hashable, ...]]]] = {}
        for (folded, exact), keys in entries.items():
            self._by_first.setdefault(folded[0], []).append((folded, exact, tuple(keys)))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda c: -len(c[0]))  # longest first
        self.size = len(entries)

    def __len__(self) -> int:
        return self.size

    def find(self, text: str | Words) -> list[tuple[int, int, tuple[Hashable, ...]]]:
        """Leftmost-longest, non-overlapping matches as ``(char start, char end, keys)``, in text order."""
        words = text if isinstance(text, Words) else Words.of(text)
        found, i, n = [], 0, len(words)
        while i < n:
            match = None
            for folded, exact, keys in self._by_first.get(words.folded[i], ()):
                j = i + len(folded)
                if j <= n and tuple(words.folded[i:j]) == folded and (
                    exact is None or tuple(words.raw[i:j]) == exact
                ):
                    match = (j, keys)
                    break
            if match is None:
                i += 1
                continue
            j, keys = match
            found.append((words.starts[i], words.ends[j - 1], keys))
            i = j
        return found


# ---------------------------------------------------------------------------------------------------
# Title mentions
# ---------------------------------------------------------------------------------------------------


def title_variants(title: str) -> list[str]:
    """Names under which a title may appear in text; the year is left out (it may or may not follow).

    ``"Breakfast Club, The (1985)"`` → ``["Breakfast Club, The", "The Breakfast Club"]``; an alternative
    title in parentheses is also dropped (``"Seven (a.k.a. Se7en) (1995)"`` → also ``"Seven"``); a
    leading article is also moved behind a comma (``"The Matrix"`` → ``"Matrix, The"``). A title that is
    only a year keeps it.
    """
    base = _YEAR_SUFFIX.sub("", title).strip() or title.strip()
    names = [base]
    if base.endswith(")") and not base.startswith("("):
        main = _ALT_TITLE_SUFFIX.sub("", base).strip()
        if main:
            names.append(main)
    variants: list[str] = []
    for name in names:
        variants.append(name)
        trailing = _TRAILING_ARTICLE.match(name)
        if trailing:
            variants.append(f"{trailing.group(2)} {trailing.group(1)}")
        leading = _LEADING_ARTICLE.match(name)
        if leading:
            variants.append(f"{leading.group(2)}, {leading.group(1)}")
    return list(dict.fromkeys(v for v in variants if v))


def _short(phrase: str) -> bool:
    return sum(c.isalnum() for c in phrase) < MIN_CASELESS_TITLE_CHARS


def title_index(titles: Sequence[str]) -> PhraseIndex:
    """A :class:`PhraseIndex` of every variant of ``titles``; the key is the title's position."""
    return PhraseIndex(((v, k) for k, t in enumerate(titles) for v in title_variants(t)), case_sensitive=_short)


def find_title_mentions(text: str, titles: Sequence[str]) -> list[tuple[int, int, int]]:
    """Mentions of ``titles`` in ``text`` as ``(start, end, title position)``.

    With or without the year, case-insensitive (case-sensitive for titles shorter than
    :data:`MIN_CASELESS_TITLE_CHARS`). A name followed by another year than the title's is another
    item (a remake: ``"Hamlet (1996)"`` is not a mention of ``"Hamlet (1990)"``). A title whose name
    is the start of a longer title (``"Alien"`` in ``"Alien Nation"``) is still found there.
    """
    if not titles:
        return []
    years = [_title_year(t) for t in titles]
    found = []
    for start, end, keys in title_index(titles).find(text):
        written = _YEAR_AFTER.match(text, end)
        written_year = int(written.group(1)) if written else None
        keys = [k for k in keys if written_year is None or years[k] in (None, written_year)]
        if keys:
            found.append((start, end, int(keys[0])))
    return found


def _title_year(title: str) -> int | None:
    match = _YEAR_SUFFIX.search(title)
    return int(match.group(1)) if match else None
