"""Title normalisation and the exact → normalised → fuzzy matcher, on the real catalog and small ones."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from rapidfuzz import fuzz, process

from rerec.data.matching import TitleMatch, TitleMatcher, fuzzy_names_same_work, normalize_title, split_year
from rerec.data.movielens import read_movies
from rerec.data.records import Item


@pytest.fixture(scope="module")
def movies(recbench_dir: Path) -> dict[int, Item]:
    return read_movies(recbench_dir / "movie" / "movies.dat")


@pytest.fixture(scope="module")
def matcher(movies: dict[int, Item]) -> TitleMatcher:
    return TitleMatcher(movies.values())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Breakfast Club, The (1985)", "The Breakfast Club (1985)"),
        ("Breakfast Club, The (1985)", "the breakfast club"),
        ("Bug's Life, A (1998)", "A Bug’s Life"),
        ("Say Anything... (1989)", "Say Anything (1989)"),
        ("Schindler's List (1993)", "“Schindlers List”"),
        ("Bill & Ted's Excellent Adventure", "Bill and Ted's Excellent Adventure"),
        ("Misérables, Les (1995)", "Les Miserables"),
        ("Godfather: Part II, The (1974)", "The Godfather Part II"),
    ],
)
def test_normalize_title_equal(a: str, b: str) -> None:
    assert normalize_title(a) == normalize_title(b)


def test_normalize_title_values() -> None:
    assert normalize_title("Breakfast Club, The (1985)") == "breakfast club"
    assert normalize_title("Die Hard (1988)") == "die hard"  # "Die" only counts as an article at the end
    assert normalize_title("Hamlet (1990)") == normalize_title("Hamlet (1996)")
    assert normalize_title("Heat") != normalize_title("Heathers")
    assert split_year("Heat (1995)") == ("Heat", 1995)
    assert split_year("Heat") == ("Heat", None)


def test_breakfast_club_and_real_titles(matcher: TitleMatcher, movies: dict[int, Item]) -> None:
    assert movies[1968].title == "Breakfast Club, The (1985)"
    assert matcher.match("The Breakfast Club (1985)") == TitleMatch(1968, "normalized", 1.0)
    assert matcher.match("Breakfast Club, The (1985)") == TitleMatch(1968, "exact", 1.0)
    assert matcher.match("Leon: The Professional (1994)").item_id == 293  # alternative title
    assert matcher.match("The Professional (1994)").item_id == 293
    assert matcher.match("Star Wars (1977)").item_id == 260  # part before the subtitle, year picks
    assert matcher.match("Star Wars (1980)").item_id == 1196
    assert matcher.match("Die Hard").item_id == 1036  # full name beats "Die Hard: With a Vengeance"
    assert matcher.match("Die Hard (1995)").item_id == 165  # ... unless the year says otherwise
    # A query's own subtitle is not dropped: an unknown sequel is no normalised match of the original.
    assert matcher.match("Die Hard: Year Zero (2031)").kind != "normalized"


def test_every_catalog_title_matches_itself_exactly(matcher: TitleMatcher, movies: dict[int, Item]) -> None:
    assert len(matcher) == 3883
    results = matcher.match_many(item.title for item in movies.values())
    assert [r.item_id for r in results] == list(movies)
    assert {r.kind for r in results} == {"exact"}


def test_year_disambiguates_same_name(matcher: TitleMatcher) -> None:
    assert matcher.match("Hamlet (1990)").item_id == 3723
    assert matcher.match("hamlet (1948)").item_id == 1941
    assert matcher.match("Hamlet (1991)").item_id == 3723  # nearest year
    assert matcher.match("Psycho (1998)").item_id == 2389
    assert matcher.match("Psycho (1960)").item_id == 1219
    # Same name, same year: the article decides ("Boys, The" vs "Boys, Les", both 1997).
    assert matcher.match("The Boys (1997)").item_id == 2695
    assert matcher.match("Les Boys (1997)").item_id == 1698


def test_replacement_character_in_catalog(matcher: TitleMatcher) -> None:
    # The catalog holds "Mis\ufffdrables, Les (1995)": an accented query still matches without fuzz.
    assert matcher.match("Les Misérables (1995)") == TitleMatch(73, "normalized", 1.0)
    assert matcher.match("Pokémon: The First Movie (1998)").item_id == 3054
    plain = matcher.match("Les Miserables (1998)")  # no accent to drop: the fuzzy stage finds it
    assert (plain.item_id, plain.kind) == (1873, "fuzzy")


def test_fuzzy_and_none(matcher: TitleMatcher) -> None:
    typo = matcher.match("The Usual Suspect (1995)")
    assert (typo.item_id, typo.kind) == (50, "fuzzy")
    assert 0.8 <= typo.score < 1.0
    assert matcher.match("Quantum Zebra Symphony (2031)") == TitleMatch(None, "none", 0.0)
    assert matcher.match("") == TitleMatch(None, "none", 0.0)
    assert matcher.match("   ").kind == "none"


def test_threshold_is_used(movies: dict[int, Item]) -> None:
    strict = TitleMatcher(movies.values(), threshold=0.99)
    assert strict.match("The Usual Suspect (1995)").kind == "none"
    loose = TitleMatcher({1: "Heat (1995)", 2: "Casino (1995)"}, threshold=0.5)
    assert loose.match("Heap").item_id == 1
    with pytest.raises(ValueError, match="threshold"):
        TitleMatcher({}, threshold=0.0)


def test_length_band_finds_the_same_best_as_a_full_scan(matcher: TitleMatcher) -> None:
    """The fuzzy stage scans only choices whose length allows the threshold; that must lose nothing."""
    rng = random.Random(1)
    choices = list(matcher._by_key)
    outcomes: set[str] = set()
    for _ in range(200):
        base = rng.choice(choices)
        i = rng.randrange(len(base))
        query = base[:i] + rng.choice("xyz") + base[i + 1 :] if rng.random() < 0.7 else base[:i]
        if normalize_title(query) != query or query in matcher._by_key:
            continue  # compare raw scans only for queries the matcher uses unchanged
        # The best choice of a full scan that the series rules accept (sequel numbers, added words).
        hits = process.extract(query, choices, scorer=fuzz.ratio, processor=None, score_cutoff=80.0, limit=None)
        full = max((h for h in hits if fuzzy_names_same_work(query, h[0])), key=lambda h: h[1], default=None)
        got = matcher.match(query)
        outcomes.add(got.kind)
        if full is None:
            assert got.kind == "none", query
        else:
            assert got.kind == "fuzzy" and got.score == pytest.approx(full[1] / 100.0, abs=1e-6), query
    assert outcomes == {"fuzzy", "none"}  # both branches were exercised


def test_mapping_input_match_many_and_cache() -> None:
    m = TitleMatcher({10: "Heat (1995)", 11: "Heat (1972)", 12: "Casino (1995)"})
    assert [r.item_id for r in m.match_many(["Heat (1972)", "heat", "Casino", "Nope"])] == [11, 10, 12, None]
    assert m.match("Casio (1995)") is m.match("Casio (1995)")  # cached result object
    uncached = TitleMatcher({1: "Heat (1995)"}, cache_size=0)
    assert uncached.match("heat").item_id == 1


def test_natural_order_of_every_catalog_title(matcher: TitleMatcher, movies: dict[int, Item]) -> None:
    """Ground truth is often written "The X (year)" for the catalog's "X, The (year)": all must resolve."""
    articles = ("The", "A", "An", "Les", "La", "Le", "El", "Il", "Das", "Der", "Die")
    pattern = re.compile(r"^(.*), (" + "|".join(articles) + r") \((\d{4})\)$")
    checked = 0
    for item in movies.values():
        m = pattern.match(item.title)
        if m:
            natural = f"{m.group(2)} {m.group(1)} ({m.group(3)})"
            assert matcher.match(natural).item_id == item.item_id, natural
            checked += 1
    assert checked > 800


def test_match_among_restricts_to_the_listed_items() -> None:
    m = TitleMatcher({10: "Hamlet (1990)", 11: "Hamlet (1996)", 12: "Golden Harbor (1990)", 13: "Velvet Engine (2010)"})
    assert m.match("Hamlet").item_id == 10  # the whole catalog: catalog order
    assert m.match_among("Hamlet", [12, 11]) == TitleMatch(11, "normalized", 1.0)
    assert m.match_among("Hamlet (1990)", [12, 11]).item_id is None  # years disagree
    hit = m.match_among("Golden Harbour", [11, 12])
    expected = fuzz.ratio("golden harbour", "golden harbor") / 100.0
    assert (hit.item_id, hit.kind) == (12, "fuzzy") and hit.score == pytest.approx(expected)
    assert m.match_among("Velvet Engine", [11, 12]).item_id is None  # listed items only
    assert m.match_among("Hamlet", [99]).item_id is None and m.match_among("", [11]).item_id is None
