"""The corrected protocol, rule by rule, with every expected value computed by hand, each next to what
the official protocol makes of the same answer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from _score_release import write_lines, write_score_release

from rerec.data.records import QueryType
from rerec.eval.corrected import mean_of_defined
from rerec.eval.score import load_query_file, score_predictions

IDEAL_2 = 1 + 1 / math.log2(3)  # ideal DCG of two hits


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_score_release(tmp_path_factory.mktemp("release"))


def _one(release: Path, tmp_path: Path, qtype: str, qid: Any, response: str, protocol: str = "corrected",
         **kwargs: Any) -> dict[str, Any]:
    """Score one answer; returns its per-query row."""
    predictions = write_lines(tmp_path / "p.jsonl", [{"id": qid, "response": response}])
    out = tmp_path / protocol
    score_predictions(release, "movie", qtype, predictions, protocol, out=out, **kwargs)
    (row,) = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    return row


def test_empty_parts_are_dropped(release: Path, tmp_path: Path) -> None:
    answer = "Heat (1995) [SEP] [SEP] Casino (1995) [SEP]"
    row = _one(release, tmp_path, "explicit", 7, answer)
    assert row["titles"] == ["Heat (1995)", "Casino (1995)"]
    assert (row["recall"], row["precision"], row["ndcg"]) == (1.0, 1.0, pytest.approx(1.0))
    official = _one(release, tmp_path, "explicit", 7, answer, "official")
    assert official["precision"] == 0.5  # 2 hits over 4 parts, the 2 empty ones included


def test_k_keeps_the_first_k_titles_without_padding(release: Path, tmp_path: Path) -> None:
    row = _one(release, tmp_path, "explicit", 7, "Heat (1995)", k=3)
    # precision over K = 3; ideal DCG over min(|truth| = 2, K = 3) = 2 hits
    assert (row["recall"], row["precision"], row["ftr"]) == (0.5, pytest.approx(1 / 3), 0.0)
    assert row["ndcg"] == pytest.approx(1 / IDEAL_2)
    first = _one(release, tmp_path, "explicit", 7, "Heat (1995) [SEP] Clerks (1994) [SEP] Casino (1995)", k=1)
    # one title; ideal DCG over min(2, 1) = 1 hit: a right first title is a perfect NDCG@1
    assert (first["titles"], first["ndcg"], first["recall"], first["precision"]) == (["Heat (1995)"], 1.0, 0.5, 1.0)


def test_quotes_and_years(release: Path, tmp_path: Path) -> None:
    row = _one(release, tmp_path, "demographics", "0-0",
               '"The Breakfast Club (1985)" [SEP] \'Mission: Impossible (1996)\'')
    assert row["item_ids"] == [5, 6] and row["recall"] == 1.0
    # a year one off still names the film; more than one off does not; no year: the name decides
    near = _one(release, tmp_path, "explicit", 7, "Heat (1996) [SEP] Casino (2010) [SEP] Casino")
    assert near["item_ids"] == [1, -1, 2]
    # official: the years are stripped from answers only; "The Breakfast Club" misses the truth's
    # "Breakfast Club, The (1985)" (0.64), "Mission: Impossible" reaches "Mission: Impossible (1996)"
    official = _one(release, tmp_path, "demographics", "0-0",
                    '"The Breakfast Club (1985)" [SEP] \'Mission: Impossible (1996)\'', "official")
    assert official["recall"] == 0.5


def test_sequels_are_not_their_originals(release: Path, tmp_path: Path) -> None:
    row = _one(release, tmp_path, "demographics", "0-0", "Mission: Impossible 3 [SEP] Mission: Impossible - Fallout")
    assert row["item_ids"] == [-1, -1] and row["recall"] == 0.0


def test_a_repeated_hit_counts_once(release: Path, tmp_path: Path) -> None:
    row = _one(release, tmp_path, "explicit", 7, "Heat [SEP] Heat [SEP] Casino")
    assert row["item_ids"] == [1, 1, 2]
    # hits at ranks 1 and 3 (the repeat is a wasted slot): (1 + 1/log2 4) / (1 + 1/log2 3)
    assert row["ndcg"] == pytest.approx(1.5 / IDEAL_2)
    assert (row["recall"], row["precision"]) == (1.0, pytest.approx(2 / 3))


@pytest.mark.parametrize(
    ("answer", "ftr", "titles"),
    [
        ("Clerks (1994)", 0.0, ["Clerks (1994)"]),  # one title is a list (official: FTR 1)
        ("Here you go:\n- Clerks (1994)\n- Heat (1995)", 1.0, None),  # prose, no [SEP]: no list
        ("", 1.0, None),
        (" [SEP] ", 1.0, None),  # only empty parts (official: FTR 0)
        ("My picks:\nClerks (1994) [SEP] Heat (1995)\nEnjoy!", 0.0, ["Clerks (1994)", "Heat (1995)"]),
    ],
)
def test_ftr_is_no_parsable_list(
    release: Path, tmp_path: Path, answer: str, ftr: float, titles: list[str] | None
) -> None:
    row = _one(release, tmp_path, "explicit", 8, answer)
    assert (row["ftr"], row["titles"]) == (ftr, titles)
    if titles is None:
        assert (row["ndcg"], row["recall"], row["precision"]) == (0.0, 0.0, 0.0)
        assert (row["satisfied_ratio"], row["existence_in_catalog_ratio"]) == (None, None)


def test_condition_satisfaction_over_distinct_found_items(release: Path, tmp_path: Path) -> None:
    row = _one(release, tmp_path, "explicit", 7,
               "Heat [SEP] GoodFellas [SEP] Clerks [SEP] Nonexistent Film [SEP] GoodFellas")
    assert row["item_ids"] == [1, 3, 4, -1, 3]
    # distinct found {Heat (truth), GoodFellas (Crime), Clerks (Comedy)}: 2 of 3; found titles 4 of 5
    assert row["satisfied_ratio"] == pytest.approx(2 / 3)
    assert row["existence_in_catalog_ratio"] == 0.8
    # official: GoodFellas counted twice -> (2 + 1) / 4 found parts
    official = _one(release, tmp_path, "explicit", 7,
                    "Heat [SEP] GoodFellas [SEP] Clerks [SEP] Nonexistent Film [SEP] GoodFellas", "official")
    assert official["satisfied_ratio"] == 0.75


def test_undefined_values_are_left_out_of_the_means(release: Path, tmp_path: Path) -> None:
    assert mean_of_defined([0.5, None, 1.0]) == 0.75 and mean_of_defined([None]) is None
    predictions = write_lines(tmp_path / "p.jsonl", [
        {"id": 7, "response": "Heat [SEP] Clerks"},  # found {1, 4}: 1 of 2 satisfy
        {"id": 8, "response": "Nothing Here [SEP] Nope"},  # nothing found: undefined
    ])
    summary = score_predictions(release, "movie", "explicit", predictions, "corrected")
    assert summary["means"]["satisfied_ratio"] == 0.5 and summary["defined"]["satisfied_ratio"] == 1
    assert summary["means"]["existence_in_catalog_ratio"] == 0.5  # 1.0 and 0.0: both defined


def test_boxed_answers_of_rerec_prompts(release: Path, tmp_path: Path) -> None:
    answer = "Crime films.\n\\boxed{Heat (1995); Casino (1995)}"
    row = _one(release, tmp_path, "explicit", 7, answer, answer_format="boxed")
    assert (row["item_ids"], row["ndcg"]) == ([1, 2], pytest.approx(1.0))


def test_truth_is_the_reader_s_catalog_ids(release: Path) -> None:
    qfile = load_query_file(release, "movie", QueryType.DEMOGRAPHICS)
    assert [q.bench_id for q in qfile.queries] == ["0-0", "1-0", "1-1"]
    assert [q.query.query_id for q in qfile.queries] == [
        "movie/demographics/0/0", "movie/demographics/30/0", "movie/demographics/30/1"]
    assert qfile.by_bench_id["1-1"].query.truth_item_ids == (3,)
