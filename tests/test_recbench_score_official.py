"""The official protocol, rule by rule, with every expected value computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _score_release import EXPLICIT, write_lines, write_score_release

from rerec.data.kg_input import item_attributes, release_triples
from rerec.data.movielens import read_movies
from rerec.eval import official
from rerec.eval.official import CatalogLookup, OfficialTruth, match_to_truth, parts, similar, unreachable
from rerec.eval.score import score_predictions

LOG2_3 = math.log2(3)


# ---------------------------------------------------------------- rule 1: parts
def test_parts_strip_spaces_then_single_then_double_quotes_then_the_trailing_year() -> None:
    answer = ' "Heat (1995)" [SEP]\'Casino (1995)\'[SEP] "\'Clerks\'" [SEP] Heat(1995) [SEP] GoodFellas (1990) (1991)'
    assert parts(answer) == [
        "Heat",               # double quotes stripped, then the year
        "Casino",             # single quotes
        "'Clerks'",           # single quotes first (none at the ends yet), then double: inner ones stay
        "Heat(1995)",         # no space before the year: not a year
        "GoodFellas (1990)",  # only the last year
    ]


def test_empty_parts_are_kept() -> None:
    assert parts("Heat [SEP] [SEP] Casino [SEP]") == ["Heat", "", "Casino", ""]
    assert parts("") == [""]


# ---------------------------------------------------------------- rule 2: cut-off and padding
def test_k_keeps_the_first_k_parts_and_pads_with_none() -> None:
    assert parts("A [SEP] B [SEP] C", k=2) == ["A", "B"]
    assert parts("A", k=3) == ["A", "none", "none"]
    assert parts("A [SEP] B [SEP] C", k=0) == ["A", "B", "C"]


def test_padding_counts_in_precision() -> None:
    truth = OfficialTruth(("Breakfast Club, The (1985)", "Mission: Impossible (1996)"))
    got = official.score("Breakfast Club, The (1985)", truth, k=3)
    # parts: BC (hit), none, none -> 1 hit of 2 truth, over 3 parts
    assert got["parts"] == ["Breakfast Club, The", "none", "none"]
    assert (got["recall"], got["precision"]) == (0.5, pytest.approx(1 / 3))
    assert got["ndcg"] == pytest.approx(1 / (1 + 1 / LOG2_3))


# ---------------------------------------------------------------- rule 3: title match
def test_title_match_is_difflib_against_the_truth_title_with_its_year() -> None:
    # 2·14/(14+21) = 0.8 exactly: a 14-character title just reaches its truth title ...
    assert similar("Reservoir Dogs", "Reservoir Dogs (1992)", 0.8)
    # ... a 12-character one cannot: 2·12/(12+19) = 0.774
    assert not similar("Pulp Fiction", "Pulp Fiction (1994)", 0.8)
    # case and article order count: 2·14/(18+26) = 0.636
    assert not similar("The Breakfast Club", "Breakfast Club, The (1985)", 0.8)
    assert similar("Pulp Fiction", "Pulp Fiction (1994)", 0.65)  # the book threshold


def test_a_part_becomes_the_first_similar_truth_title_not_the_best() -> None:
    truth = ["Mission: Impossible 2 (2000)", "Mission: Impossible (1996)"]
    # "Mission: Impossible" vs the sequel: 2·19/(19+28) = 0.809 >= 0.8, and the sequel comes first
    assert match_to_truth(["Mission: Impossible", "Heat"], truth, 0.8) == ["Mission: Impossible 2 (2000)", "Heat"]


def test_unreachable_truth_titles_are_counted() -> None:
    # "Clerks" vs "Clerks (1994)": 2·6/19 = 0.63; both Breakfast Club spellings are >= 14 characters
    assert unreachable(["Clerks (1994)", "Breakfast Club, The (1985)", "The Breakfast Club (1985)"], 0.8) == 1
    got = official.score("Clerks (1994) [SEP] Clerks", OfficialTruth(("Clerks (1994)",)))
    assert (got["recall"], got["unreachable_truth"]) == (0.0, 1)  # even the exact title misses


# ---------------------------------------------------------------- rule 5: metrics
def test_repeated_hits_count_each_time_in_ndcg_and_once_in_recall() -> None:
    truth = ("Breakfast Club, The (1985)", "Mission: Impossible (1996)")
    got = official.score("Breakfast Club, The [SEP] Breakfast Club, The [SEP] Heat", OfficialTruth(truth))
    assert got["recall"] == 0.5
    assert got["precision"] == pytest.approx(1 / 3)
    # rel = [1, 1, 0]: (1 + 1/log2 3) / ideal (1 + 1/log2 3)
    assert got["ndcg"] == pytest.approx(1.0)
    once = official.score("Breakfast Club, The [SEP] Breakfast Club, The", OfficialTruth(truth[:1]))
    assert once["ndcg"] == pytest.approx(1 + 1 / LOG2_3)  # above 1


def test_duplicate_truth_entries_count_twice() -> None:
    assert official.recall(["T"], ["T", "T"]) == 1.0
    assert official.precision(["T"], ["T", "T"]) == 2.0
    assert official.recall([], []) == 0.0 and official.precision([], ["T"]) == 0.0 and official.ndcg(["T"], []) == 0.0


# ---------------------------------------------------------------- rule 6: FTR
def test_ftr_is_an_answer_without_sep_and_its_title_is_still_scored() -> None:
    truth = OfficialTruth(("Breakfast Club, The (1985)", "Mission: Impossible (1996)"))
    one = official.score("Breakfast Club, The (1985)", truth)
    assert (one["ftr"], one["recall"], one["precision"]) == (1.0, 0.5, 1.0)
    assert official.score("Heat [SEP] Casino", truth)["ftr"] == 0.0
    assert official.score("", truth)["ftr"] == 1.0


# ---------------------------------------------------------------- rules 4 and 7: condition queries
@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    root = write_score_release(tmp_path_factory.mktemp("release"))
    items = read_movies(root / "movie" / "movies.dat")
    return items, CatalogLookup(items), item_attributes(release_triples(items, []))


def _explicit_truth() -> OfficialTruth:
    record = EXPLICIT[0]
    return OfficialTruth(tuple(record["movieSubset"]), tuple(record["movieSubsetId"]), (("Genre", "Crime"),))


def test_catalog_lookup_is_equal_title_then_first_title_containing_the_part(catalog) -> None:
    _, lookup, _ = catalog
    assert lookup("Heat") == 1 and lookup("Heat (1995)") == 1
    assert lookup("Mission: Impossible") == 6  # equal title first, though the sequel contains it too
    assert lookup("Impossible 2") == 7  # contained
    assert lookup("impossible 2") is None  # case-sensitive
    assert lookup("") == 1  # an empty part is in every title: the catalog's first item
    assert lookup("Nonexistent Film") is None


def test_condition_query_takes_the_max_of_title_and_id_scores(catalog) -> None:
    _, lookup, attributes = catalog
    got = official.score("Heat [SEP] GoodFellas [SEP] Clerks [SEP] Nonexistent Film", _explicit_truth(),
                         lookup=lookup, attributes=attributes)
    # titles: "Heat" vs "Heat (1995)" is 2·4/15 = 0.53, no title hit; ids [1, 3, 4, None] vs truth [1, 2]
    assert got["recall"] == 0.5 and got["precision"] == 0.25
    assert got["ndcg"] == pytest.approx(1 / (1 + 1 / LOG2_3))
    # found: Heat (truth), GoodFellas (Crime: satisfies), Clerks (Comedy: does not) -> 2 of 3
    assert got["satisfied_ratio"] == pytest.approx(2 / 3)
    assert got["existence_in_catalog_ratio"] == 0.75


def test_an_empty_part_finds_the_first_catalog_item(catalog) -> None:
    _, lookup, attributes = catalog
    got = official.score("Casino [SEP] ", _explicit_truth(), lookup=lookup, attributes=attributes)
    # ids [2, 1]: the empty part "found" Heat, a truth item
    assert (got["recall"], got["precision"], got["ndcg"]) == (1.0, 1.0, pytest.approx(1.0))
    assert (got["satisfied_ratio"], got["existence_in_catalog_ratio"]) == (1.0, 1.0)


def test_nothing_found_is_minus_one_and_left_out_of_the_mean(catalog, tmp_path: Path) -> None:
    _, lookup, attributes = catalog
    none = official.score("Nothing Here [SEP] Nope", _explicit_truth(), lookup=lookup, attributes=attributes)
    assert (none["satisfied_ratio"], none["existence_in_catalog_ratio"]) == (-1.0, 0.0)
    assert official.mean_without_missing([0.5, -1, 1.0]) == 0.75
    assert official.mean_without_missing([-1]) is None
    root = write_score_release(tmp_path / "release")
    predictions = write_lines(tmp_path / "p.jsonl", [
        {"id": 7, "response": "Heat [SEP] GoodFellas [SEP] Clerks [SEP] Nonexistent Film"},
        {"id": "8", "response": "Nothing Here [SEP] Nope"},
    ])
    summary = score_predictions(root, "movie", "explicit", predictions, "official")
    assert summary["means"]["satisfied_ratio"] == pytest.approx(2 / 3)  # the −1 is left out
    assert summary["defined"]["satisfied_ratio"] == 1
    assert summary["means"]["existence_in_catalog_ratio"] == pytest.approx((0.75 + 0.0) / 2)
    assert summary["means"]["recall"] == pytest.approx(0.25)  # 0.5 and 0.0
