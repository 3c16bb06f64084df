"""KG-verified RAAE (beyond the paper, off by default): find reasoning segments that assert an
(item, relation, value) fact the item–attribute graph contradicts.

How an assertion is read from a segment (deliberately simple, literal, and precision-first):

1. **Item mentions**: a catalog title written with its year, ``Title (1990)``. For every ``(YYYY)``
   the checker tries the words before it, longest first (at most ``max_title_words``, never across
   ``;``, ``|``, a newline or an earlier mention), with the title matcher; the first candidate that
   resolves to a catalog id is the mention.
2. **Relation phrases**: the words of ``relation_phrases`` (``director``, ``directed by``, ``star``,
   ``genre`` ...), literal and word-aligned (:class:`~rerec.rl.raae.segments.PhraseIndex`).
3. **Values**: the known attribute values of the graph (person names, genres, studios ...), literal
   and word-aligned, longest first.
4. A value ``v`` asserts ``(item, relation, v)`` when, reading left to right, it follows an item
   mention and a relation phrase of a relation that ``v`` is a known value of, with the phrase after
   the mention (the nearest preceding mention and the nearest preceding phrase count). A negation
   word (``not``, ``no``, ``never``, ``isn't`` ...) between the phrase and the value, or in the two
   words before the phrase, cancels it (``"director Ann Lee, not Bo Chen"`` asserts only Ann Lee).
5. The assertion is **contradicted** when the graph gives the item at least one value for that
   relation and ``v`` is not among them (values compared case-insensitively). A phrase shared by
   several relations contradicts only when every reading does. An item with no value for the
   relation is unknown, not contradicted.

Detects: ``"Silent River (1987): director Bo Chen; genre Drama."`` when the graph says another
director or other genres; ``"Silent River (1987) was directed by Bo Chen"``; several values after one
phrase (``"starring A and B"``).

Cannot detect: titles written without their year; a value before its item (``"Bo Chen's Silent River
(1987)"``) or before its phrase; paraphrases (``"the man behind the camera"``); values the graph does
not know (a made-up name is not a known value); negation beyond the simple window, sarcasm or
hypotheticals; several items sharing one phrase (``"A (1990) and B (1991) were directed by X"``
checks B only). A fuzzy title matcher may resolve a long candidate to the item it contains, which is
intended, and rarely to a similar title, which would be a false alarm.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rerec.data.records import Triple
from rerec.rl.raae.segments import PhraseIndex, Words

#: Words that introduce a relation's values in text, keyed by the knowledge graph's relation names
#: (RecBench+ movie and book relations; the synthetic world uses the same names). The first phrase of
#: each entry is the one the synthetic traces write (see ``rerec.data.prompts.RELATION_PHRASES``).
DEFAULT_RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "Directed_by": ("director", "directors", "directed by", "direction by", "directed"),
    "Starring": ("star", "stars", "starring", "starred", "cast", "actor", "actors", "actress", "lead actor"),
    "Written_by": ("writer", "writers", "written by", "wrote"),
    "Screenplay_by": ("screenplay", "screenplay by", "screenwriter"),
    "Produced_by": ("studio", "studios", "produced by", "producer", "production company"),
    "Distributed_by": ("distributor", "distributed by"),
    "Music_by": ("composer", "music by", "score by"),
    "Cinematography": ("cinematographer", "cinematography", "director of photography", "shot by"),
    "Edited_by": ("editor", "edited by"),
    "Narrated_by": ("narrator", "narrated by"),
    "Genre": ("genre", "genres"),
    "Language": ("language",),
    "Production_Country": ("country", "produced in"),
    "WRITTEN_BY": ("author", "written by", "writer"),
    "BELONGS_TO": ("category", "categories"),
}

NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "without", "isn", "wasn", "aren", "weren",
                       "doesn", "didn", "don", "hasn", "haven"})
_YEAR = re.compile(r"\(\s*\d{4}\s*\)")
_NON_SPACE = re.compile(r"\S+")
_CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class Contradiction:
    """One asserted fact the graph contradicts.

    Attributes:
        item_id: The item the segment talks about.
        relation: Relation name of the graph.
        value: The value as the graph spells it.
        start: First character of the value in the checked text.
        end: One past its last character.
    """

    item_id: int
    relation: str
    value: str
    start: int
    end: int


def _norm(value: str) -> str:
    return " ".join(value.casefold().split())


def _item_id(result: Any) -> int | None:
    """A matcher's answer as an id: ``None``, an int, or an object with ``item_id`` (``TitleMatch``)."""
    if result is None:
        return None
    result = getattr(result, "item_id", result)
    return None if result is None or int(result) < 0 else int(result)


class FactChecker:
    """Finds graph-contradicted facts in reasoning text (see the module docstring for the rules).

    Args:
        match_title: Title → catalog item id or ``None`` (``TitleMatcher.match`` works as is: an answer
            with an ``item_id`` attribute is read through it; ids < 0 mean no match).
        item_attributes: Item id → its ``(relation, value)`` facts.
        relation_phrases: Relation name → phrases that introduce its values. Relations without phrases
            are never checked.
        known_values: Relation name → values recognised in text; by default every value of
            ``item_attributes``.
        max_title_words: Longest title candidate, in words before the ``(year)``.
    """

    def __init__(
        self,
        match_title: Callable[[str], Any],
        item_attributes: Mapping[int, Iterable[tuple[str, str]]],
        relation_phrases: Mapping[str, Sequence[str]] = DEFAULT_RELATION_PHRASES,
        known_values: Mapping[str, Iterable[str]] | None = None,
        max_title_words: int = 8,
    ) -> None:
        if max_title_words < 1:
            raise ValueError(f"max_title_words must be >= 1, got {max_title_words}")
        self.match_title = match_title
        self.max_title_words = max_title_words
        self._facts: dict[int, dict[str, set[str]]] = {}
        derived: dict[str, set[str]] = {}
        for item_id, facts in item_attributes.items():
            per_relation = self._facts.setdefault(int(item_id), {})
            for relation, value in facts:
                per_relation.setdefault(relation, set()).add(_norm(value))
                derived.setdefault(relation, set()).add(value)
        values = derived if known_values is None else {r: set(v) for r, v in known_values.items()}
        checked = [r for r in relation_phrases if values.get(r)]
        self.relations = tuple(checked)
        self._phrases = PhraseIndex((p, r) for r in checked for p in relation_phrases[r])
        self._values = PhraseIndex(((v, (r, v)) for r in checked for v in values[r]))
        self._title_cache: dict[str, tuple[int | None, bool]] = {}

    @classmethod
    def from_triples(
        cls, match_title: Callable[[str], Any], triples: Iterable[Triple], **kwargs: Any
    ) -> FactChecker:
        """Build from :class:`~rerec.data.records.Triple` facts (``Release.triples``)."""
        facts: dict[int, set[tuple[str, str]]] = {}
        for t in triples:
            facts.setdefault(t.item_id, set()).add((t.relation, t.value))
        return cls(match_title, facts, **kwargs)

    def _lookup(self, candidate: str) -> tuple[int | None, bool]:
        """(item id or ``None``, whether the match is exact or normalised rather than fuzzy)."""
        if candidate not in self._title_cache:
            if len(self._title_cache) >= _CACHE_LIMIT:
                self._title_cache.clear()
            result = self.match_title(candidate)
            self._title_cache[candidate] = (_item_id(result), getattr(result, "score", 1.0) >= 1.0)
        return self._title_cache[candidate]

    def item_mentions(self, text: str) -> list[tuple[int, int, int]]:
        """Catalog items written with their year in ``text``, as ``(start, end, item id)``."""
        found: list[tuple[int, int, int]] = []
        floor = 0
        for year in _YEAR.finditer(text):
            lo = max(floor, *(text.rfind(d, 0, year.start()) + 1 for d in (";", "|", "\n")))
            starts = [m.start() for m in _NON_SPACE.finditer(text, lo, year.start())]
            # Longest span first, but an exact title at any length beats a fuzzy one: "Recall The Quiet
            # Cathedral (1992)" fuzzily matches another film, "The Quiet Cathedral (1992)" is the film.
            chosen = None
            for start in starts[-self.max_title_words :]:
                item, exact = self._lookup(text[start : year.end()])
                if item is not None and (exact or chosen is None):
                    chosen = (start, year.end(), item)
                    if exact:
                        break
            if chosen is not None:
                found.append(chosen)
                floor = year.end()
        return found

    def contradictions(self, text: str) -> list[Contradiction]:
        """Facts asserted in ``text`` (one reasoning segment) that the graph contradicts."""
        words = Words.of(text)
        phrases = self._phrases.find(words)
        if not phrases:
            return []
        values = self._values.find(words)
        if not values:
            return []
        items = self.item_mentions(text)
        if not items:
            return []
        found = []
        for v_start, v_end, keys in values:
            if any(s < v_end and v_start < e for s, e, _ in (*items, *phrases)):
                continue  # part of a title or of a relation phrase
            item = next((m for m in reversed(items) if m[1] <= v_start), None)
            if item is None:
                continue
            phrase = next((p for p in reversed(phrases) if item[1] <= p[0] and p[1] <= v_start), None)
            if phrase is None or self._negated(words, item[1], phrase[0], phrase[1], v_start):
                continue
            readings = [(r, v) for r, v in keys if r in phrase[2]]
            if readings and all(self._contradicts(item[2], r, v) for r, v in readings):
                relation, value = readings[0]
                found.append(Contradiction(item[2], relation, value, v_start, v_end))
        return found

    @staticmethod
    def _negated(words: Words, item_end: int, phrase_start: int, phrase_end: int, value_start: int) -> bool:
        between = [w for w, s, e in zip(words.folded, words.starts, words.ends) if s >= phrase_end and e <= value_start]
        before = [w for w, s, e in zip(words.folded, words.starts, words.ends) if s >= item_end and e <= phrase_start]
        return any(w in NEGATIONS for w in (*between, *before[-2:]))

    def _contradicts(self, item_id: int, relation: str, value: str) -> bool:
        truth = self._facts.get(item_id, {}).get(relation)
        return bool(truth) and _norm(value) not in truth
