"""Free-text title → catalog item id: exact, then normalised, then fuzzy.

Used on ground-truth titles of the query files (once, when loading) and on every title a policy
recommends (in the reward, thousands per step), so a match is a few dict look-ups and, only when those
fail, one rapidfuzz scan over the normalised catalog names; results are LRU-cached.

Normalisation (:func:`normalize_title`) makes these equal: case, accents, quotes and punctuation,
``&``/``and``, an article in front or after a comma (``"The Breakfast Club"`` ≡ ``"Breakfast Club,
The"``, also the foreign articles MovieLens moves to the end: ``"Misérables, Les"``), and a trailing
``(year)``, which is split off and only used to choose between catalog items sharing a name.
Catalog titles with an alternative title in parentheses (``"Professional, The (a.k.a. Leon: The
Professional) (1994)"``) are also indexed under the main and the alternative name alone, and titles
with a subtitle under the part before the colon (see :func:`title_keys`); a full name beats such an
alias. A U+FFFD in a catalog title (a lost latin-1 letter) is dropped, and a query title with
non-ASCII letters is also looked up with those letters dropped, so ``"Les Misérables (1995)"`` finds
``"Mis\ufffdrables, Les (1995)"`` without the fuzzy stage. Quotes around a whole title are stripped
before its year is split off (``'"The Terminator (1984)"'`` is ``"Terminator, The (1984)"``).

What a match never does (each was measured on real model answers): join a title to an item whose year
is more than :data:`MAX_YEAR_GAP` away (``"Cinderella (2015)"`` is not the 1950 film), and, in the
fuzzy stage, join two names carrying different sequel numbers (``"Toy Story 4"`` is not ``"Toy Story
2"``, ``"Blade Runner 2049"`` not ``"Blade Runner"``) or a name that adds words to the item's
(``"Mission: Impossible – Fallout"`` is neither ``"Mission: Impossible"`` nor its sequel); see
:func:`fuzzy_names_same_work`.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz, process

from rerec.data.records import Item

MatchKind = Literal["exact", "normalized", "fuzzy", "none"]

#: Default fuzzy thresholds per domain, as the RecBench+ evaluation uses them.
DEFAULT_THRESHOLDS: dict[str, float] = {"movie": 0.8, "book": 0.65}

# Articles a title may start with; removing them on both sides makes word order irrelevant.
_LEADING_ARTICLES = (
    "the", "a", "an", "les", "la", "le", "l'", "el", "il", "lo", "los", "las", "das", "der", "det",
)
# MovieLens also moves these to the end (", Die", ", I", ", O"); stripped there only, since as a first
# word they are mostly English ("Die Hard", "I Shot Andy Warhol", "O Brother, Where Art Thou?").
_TRAILING_ARTICLES = _LEADING_ARTICLES + ("die", "i", "o", "den", "gli")

_YEAR_RE = re.compile(r"\s*\(\s*(\d{4})\s*\)\s*$")
_TRAILING_ARTICLE_RE = re.compile(
    r",\s*(" + "|".join(re.escape(a) for a in _TRAILING_ARTICLES) + r")\s*$", re.IGNORECASE
)
_LEADING_ARTICLE_RE = re.compile(
    r"^(?:"
    + "|".join(re.escape(a) + (r"\s*" if a.endswith("'") else r"\s+") for a in _LEADING_ARTICLES)
    + ")",
    re.IGNORECASE,
)
_AKA_RE = re.compile(r"^(?:a\.?\s?k\.?\s?a\.?|aka)\s+", re.IGNORECASE)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'", "\u00b4": "'",
                         "\u201c": '"', "\u201d": '"', "\ufffd": None})
_NON_ALNUM_RE = re.compile(r"[^0-9a-z]+")
# Quote characters that may wrap a whole title in an answer: '"The Terminator (1984)"'.
_WRAPPING_QUOTES = "\"'`\u2018\u2019\u201c\u201d\u00ab\u00bb"

#: A fuzzy or normalised match is rejected when both sides carry a year and they differ by more.
MAX_YEAR_GAP = 1
# Sequel numerals as words of a normalised name ("rocky v", "godfather part ii"); a lone "i" is the
# pronoun far more often than a numeral, so it does not count.
_ROMAN = {
    numeral: value
    for value, numeral in enumerate(
        "ii iii iv v vi vii viii ix x xi xii xiii xiv xv xvi xvii xviii xix xx".split(), start=2
    )
}


def strip_wrapping_quotes(title: str) -> str:
    """``'"The Terminator (1984)"'`` → ``"The Terminator (1984)"``: quote characters removed from both
    ends while the text starts *and* ends with one (a title like ``"'burbs, The (1989)"`` keeps its
    apostrophe)."""
    text = title.strip()
    while len(text) >= 2 and text[0] in _WRAPPING_QUOTES and text[-1] in _WRAPPING_QUOTES:
        text = text[1:-1].strip()
    return text


def sequel_numbers(key: str) -> frozenset[int]:
    """Numbers a normalised name carries as words: digits and Roman numerals II–XX
    (``"toy story 2"`` → ``{2}``, ``"rocky v"`` → ``{5}``, ``"blade runner 2049"`` → ``{2049}``)."""
    words = key.split()
    return frozenset(int(w) if w.isdigit() else _ROMAN[w] for w in words if w.isdigit() or w in _ROMAN)


def fuzzy_names_same_work(query_key: str, choice_key: str) -> bool:
    """Whether a fuzzy match of two normalised names may stand.

    Similar names of different entries of a series are not the same work: the match is refused when
    the two carry different sequel numbers (``"toy story 4"`` / ``"toy story 2"``, ``"blade runner
    2049"`` / ``"blade runner"``), or when the query is the choice plus more whole words (``"mission
    impossible fallout"`` / ``"mission impossible"``: a subtitle names another entry). A query that
    drops words of the choice (a shortened title) may stand.
    """
    if sequel_numbers(query_key) != sequel_numbers(choice_key):
        return False
    query_words, choice_words = query_key.split(), choice_key.split()
    return not (len(query_words) > len(choice_words) and query_words[: len(choice_words)] == choice_words)


def years_compatible(a: int | None, b: int | None) -> bool:
    """True unless both years are known and differ by more than :data:`MAX_YEAR_GAP`."""
    return a is None or b is None or abs(a - b) <= MAX_YEAR_GAP


def split_year(title: str) -> tuple[str, int | None]:
    """``"Heat (1995)"`` → ``("Heat", 1995)``; without a trailing 4-digit year → ``(title, None)``.

    Quotes around the whole title are stripped first, so ``'"Heat (1995)"'`` gives ``("Heat", 1995)``.
    """
    title = strip_wrapping_quotes(title)
    match = _YEAR_RE.search(title)
    if match is None:
        return title.strip(), None
    return title[: match.start()].strip(), int(match.group(1))


def _split_alternative(name: str) -> tuple[str, str]:
    """``"Professional, The (a.k.a. Leon: The Professional)"`` → main and alternative name."""
    name = name.strip()
    if name.endswith(")") and " (" in name:
        cut = name.index(" (")
        return name[:cut], _AKA_RE.sub("", name[cut + 2 : -1].strip())
    return name, ""


def _canon(part: str) -> str:
    """Canonical form of one name: no accents, case, quotes, punctuation or article."""
    text = unicodedata.normalize("NFKD", part.translate(_QUOTES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold().strip()
    text = text.replace("&", " and ")
    text = _TRAILING_ARTICLE_RE.sub("", text)
    text = _LEADING_ARTICLE_RE.sub("", text.strip(" \"'"))
    text = text.replace("'", "")  # "Schindler's" ≡ "Schindlers", not "Schindler s"
    return _NON_ALNUM_RE.sub(" ", text).strip()


def _article(title: str) -> str:
    """The article of a title's main name, wherever it stands (``"Boys, Les (1997)"`` → ``"les"``)."""
    main, _ = _split_alternative(split_year(title)[0])
    main = main.casefold()
    match = _TRAILING_ARTICLE_RE.search(main) or _LEADING_ARTICLE_RE.match(main)
    return match.group(0).strip(" ,").rstrip("'") if match else ""


def title_keys(title: str, prefix: bool = True) -> tuple[list[str], int | None]:
    """All normalised names of ``title`` and its year.

    The names are, in order: the full name; the main and the alternative name when the title has an
    alternative in parentheses; with ``prefix``, the main name's part before a colon (``"Star Wars:
    Episode IV - A New Hope"`` → ``"star wars"``), so that a shortened title still finds its item. The
    matcher indexes catalog titles with the prefix but looks queries up without it: "Die Hard: Part 9"
    must not become "Die Hard".
    """
    name, year = split_year(title)
    main, alternative = _split_alternative(name)
    main_key, alt_key = _canon(main), _canon(alternative)
    before_colon, colon, _ = main.partition(":")
    prefix_key = _canon(before_colon) if colon and prefix else ""
    keys: list[str] = []
    for key in (f"{main_key} {alt_key}".strip(), main_key, alt_key, prefix_key):
        if key and key not in keys:
            keys.append(key)
    return keys, year


def normalize_title(title: str) -> str:
    """Normalised name of ``title`` without its year: ``"Breakfast Club, The (1985)"`` →
    ``"breakfast club"``.

    Two titles that normalise to the same string name the same work up to the year.
    """
    keys, _ = title_keys(title)
    return keys[0] if keys else ""


@dataclass(frozen=True)
class TitleMatch:
    """Result of matching one title.

    Attributes:
        item_id: Catalog id, or ``None`` when nothing matched.
        kind: ``"exact"`` (the catalog string itself), ``"normalized"`` (equal after
            :func:`normalize_title`), ``"fuzzy"`` (similarity ≥ threshold) or ``"none"``.
        score: 1.0 for exact and normalised matches, the similarity in [0, 1] for fuzzy ones, 0.0 for none.
    """

    item_id: int | None
    kind: MatchKind
    score: float


NO_MATCH = TitleMatch(item_id=None, kind="none", score=0.0)


class TitleMatcher:
    """Matches free-text titles to catalog ids: exact → normalised → fuzzy.

    Among catalog items sharing a normalised name (remakes: ``"Hamlet (1990)"``, ``"Hamlet (1996)"``),
    the title's year picks the item with that year, else the nearest year; then a full catalog name beats
    an alternative name; then an item with the same article; then catalog order. An item whose year is
    more than :data:`MAX_YEAR_GAP` from the title's is never matched, at any stage but the exact one.

    Fuzzy matching compares normalised names (years left out, as the RecBench+ evaluation does) with
    rapidfuzz's ``fuzz.ratio``: ``2·LCS/(len_a+len_b)``, close to (not identical with) the
    ``difflib.SequenceMatcher`` ratio the benchmark uses, and much faster. The best choice wins; ties keep
    the shorter name, then catalog order; a choice that :func:`fuzzy_names_same_work` refuses (another
    sequel number, or the query's name plus extra words) is passed over for the next best.

    Args:
        items: The catalog: ``{item_id: title}`` or an iterable of :class:`~rerec.data.records.Item`.
        threshold: Minimum fuzzy similarity in (0, 1]; the RecBench+ evaluation uses 0.8 for movies and
            0.65 for books (:data:`DEFAULT_THRESHOLDS`).
        cache_size: Number of distinct titles whose result is kept (LRU); 0 disables the cache.
    """

    def __init__(
        self,
        items: Mapping[int, str] | Iterable[Item],
        threshold: float = 0.8,
        cache_size: int = 65536,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        pairs = items.items() if isinstance(items, Mapping) else ((it.item_id, it.title) for it in items)
        self.threshold = threshold
        self.titles: dict[int, str] = {}
        self._exact: dict[str, int] = {}
        # normalised name -> [(item_id, year, is_alias)] in catalog order
        self._by_key: dict[str, list[tuple[int, int | None, bool]]] = {}
        self._articles: dict[int, str] = {}
        self._item_keys: dict[int, tuple[list[str], int | None]] = {}  # for match_among
        for item_id, title in pairs:
            item_id = int(item_id)
            self.titles[item_id] = title
            self._exact.setdefault(title.strip(), item_id)
            keys, year = title_keys(title)
            self._item_keys[item_id] = (keys, year)
            self._articles[item_id] = _article(title)
            for position, key in enumerate(keys):
                self._by_key.setdefault(key, []).append((item_id, year, position > 0))
        # Fuzzy choices sorted by length (stable: catalog order within a length). A similarity of t
        # needs len(choice) within [len·t/(2−t), len·(2−t)/t] of the query's length, since
        # ratio = 2·LCS/(la+lb) ≤ 2·min(la,lb)/(la+lb); scanning only that band halves the work.
        self._choices = sorted(self._by_key, key=len)
        self._choice_lengths = [len(c) for c in self._choices]
        self._cached = functools.lru_cache(maxsize=cache_size)(self._match) if cache_size else self._match

    def __len__(self) -> int:
        return len(self.titles)

    def match(self, title: str) -> TitleMatch:
        """Match one title (see the class docstring for the order of the stages)."""
        return self._cached(title)

    def match_many(self, titles: Iterable[str]) -> list[TitleMatch]:
        """Match several titles, in order."""
        return [self.match(t) for t in titles]

    def match_among(self, title: str, item_ids: Sequence[int]) -> TitleMatch:
        """Match ``title`` to one of ``item_ids`` only (e.g. a prompt's candidates), not cached.

        Years must agree when both the title and the item have one. The first listed item sharing a
        normalised name wins (``"normalized"``); else the best ``fuzz.ratio`` of full names at or above the
        threshold that :func:`fuzzy_names_same_work` accepts (``"fuzzy"``; ties keep the higher id). Ids
        missing from the catalog are ignored.
        """
        keys, year = title_keys(title, prefix=False)
        if not keys:
            return NO_MATCH
        compatible = []
        for item_id in item_ids:
            ikeys, iyear = self._item_keys.get(item_id, ([], None))
            if ikeys and (year is None or iyear is None or iyear == year):
                compatible.append((item_id, ikeys))
        for item_id, ikeys in compatible:
            if set(keys) & set(ikeys):
                return TitleMatch(item_id, "normalized", 1.0)
        score, best = max(((fuzz.ratio(keys[0], ikeys[0]) / 100.0, i) for i, ikeys in compatible
                           if fuzzy_names_same_work(keys[0], ikeys[0])), default=(0.0, None))
        if best is None or score < self.threshold:
            return NO_MATCH
        return TitleMatch(best, "fuzzy", round(score, 6))

    def _match(self, title: str) -> TitleMatch:
        if not isinstance(title, str) or not title.strip():
            return NO_MATCH
        exact = self._exact.get(title.strip())
        if exact is not None:
            return TitleMatch(exact, "exact", 1.0)
        keys, year = title_keys(title, prefix=False)
        if not title.isascii():
            # The release replaced each latin-1 letter by U+FFFD, which the catalog keys drop:
            # "Misérables" must then look up as "Misrables".
            ascii_keys, _ = title_keys("".join(c for c in title if c.isascii()), prefix=False)
            keys += [k for k in ascii_keys if k not in keys]
        for key in keys:
            candidates = self._within_year(self._by_key.get(key, ()), year)
            if candidates:
                return TitleMatch(self._pick(candidates, year, title), "normalized", 1.0)
        if not keys:
            return NO_MATCH
        # Fuzzy on the full name only: a partial name (main or alternative alone) is already covered
        # by the catalog's own main/alternative keys among the choices.
        query = keys[0]
        t = self.threshold
        lo = bisect.bisect_left(self._choice_lengths, len(query) * t / (2.0 - t) - 1e-9)
        hi = bisect.bisect_right(self._choice_lengths, len(query) * (2.0 - t) / t + 1e-9)
        found = process.extract(
            query, self._choices[lo:hi], scorer=fuzz.ratio, processor=None, score_cutoff=t * 100.0,
            limit=None,
        )
        # Best score first; ties keep the band's order (shorter name, then catalog order).
        for key, score, _ in sorted(found, key=lambda hit: (-hit[1], hit[2])):
            candidates = self._within_year(self._by_key[key], year)
            if candidates and fuzzy_names_same_work(query, key):
                return TitleMatch(self._pick(candidates, year, title), "fuzzy", round(score / 100.0, 6))
        return NO_MATCH

    @staticmethod
    def _within_year(
        candidates: Sequence[tuple[int, int | None, bool]], year: int | None
    ) -> list[tuple[int, int | None, bool]]:
        """The candidates whose year is within :data:`MAX_YEAR_GAP` of ``year`` (all when unknown)."""
        return [c for c in candidates if years_compatible(year, c[1])]

    def _pick(self, candidates: list[tuple[int, int | None, bool]], year: int | None, title: str) -> int:
        """Among items sharing a name: nearest year (when given), then full name before an alternative
        name, then the same article (``"The Boys"`` is ``"Boys, The"``, not ``"Boys, Les"``), then
        catalog order."""
        if len(candidates) == 1:
            return candidates[0][0]
        article = _article(title)

        def rank(entry: tuple[int, int | None, bool]) -> tuple[float, bool, bool]:
            item_id, item_year, is_alias = entry
            gap = float("inf") if year is None or item_year is None else abs(item_year - year)
            return (gap if year is not None else 0.0, is_alias, self._articles[item_id] != article)

        return min(candidates, key=rank)[0]  # min is stable: ties keep catalog order
