"""Per-type aggregation (hand-computed) and the report / predictions files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rerec.eval.report import (
    EvalRecord,
    aggregate,
    markdown_table,
    sampled_summary,
    write_predictions_jsonl,
    write_report,
)

R3 = 1 / math.log2(3)


def records() -> list[EvalRecord]:
    return [
        EvalRecord("movie/explicit/1", "explicit", r"\boxed{A; B}", ["A", "B"], [1, 2], ["exact", "fuzzy"], [2],
                   [("Genre", "War")]),
        EvalRecord("movie/explicit/2", "explicit", "no box", None, [], [], [3], [("Genre", "War")]),
        EvalRecord("movie/demographics/0/0", "demographics", r"\boxed{C}", ["C"], [5], ["exact"], [5, 6]),
    ]


ATTRS = {1: {("Genre", "War")}, 2: set()}


def test_aggregate_hand_computed() -> None:
    result = aggregate(records(), k=2, item_attributes=ATTRS)
    assert result["k"] == 2 and list(result["by_type"]) == ["explicit", "demographics"]
    explicit = result["by_type"]["explicit"]
    # record 1: hit at rank 2 of 1 truth -> NDCG 1/log2(3); recall 1; precision 1/2; HR 1; top-1 miss;
    # satisfaction: item 1 satisfies, item 2 does not -> 1/2. Record 2: unparsable -> zeros.
    assert explicit["ndcg@2"] == pytest.approx(R3 / 2)
    assert explicit["recall@2"] == pytest.approx(0.5)
    assert explicit["precision@2"] == pytest.approx(0.25)
    assert explicit["hr@2"] == pytest.approx(0.5)
    assert explicit["accuracy"] == 0.0
    assert explicit["ftr"] == 0.5
    assert explicit["condition_satisfaction"] == pytest.approx(0.25)
    assert explicit["count"] == 2
    demo = result["by_type"]["demographics"]
    # hit at rank 1 of 2 truths -> 1 / (1 + 1/log2(3)); recall 1/2; precision 1/2; accuracy 1
    assert demo["ndcg@2"] == pytest.approx(1 / (1 + R3))
    assert (demo["recall@2"], demo["precision@2"], demo["hr@2"], demo["accuracy"]) == (0.5, 0.5, 1.0, 1.0)
    assert demo["condition_satisfaction"] is None and demo["ftr"] == 0.0
    overall = result["overall"]
    assert overall["ndcg@2"] == pytest.approx((R3 + 1 / (1 + R3)) / 3)
    assert overall["recall@2"] == pytest.approx(0.5)
    assert overall["precision@2"] == pytest.approx(1 / 3)
    assert overall["hr@2"] == pytest.approx(2 / 3)
    assert overall["accuracy"] == pytest.approx(1 / 3)
    assert overall["ftr"] == pytest.approx(1 / 3)
    assert overall["condition_satisfaction"] == pytest.approx(0.25)  # condition queries only
    assert overall["count"] == 3


def _sample(qid: str, qtype: str, predicted: list[int], truth: list[int]) -> EvalRecord:
    return EvalRecord(qid, qtype, "", ["t"] * len(predicted) if predicted else None, predicted,
                      ["exact"] * len(predicted), truth)


def test_sampled_summary_hand_computed() -> None:
    """3 samples per query: accuracy is the mean top-1 hit over every sample, pass@3 any hit per query."""
    recs = [
        # explicit q1: hit, miss (a truth at rank 2 only), unparsable -> 1 of 3
        _sample("e1", "explicit", [7], [7]), _sample("e1", "explicit", [8, 7], [7]), _sample("e1", "explicit", [], [7]),
        # explicit q2: no hit -> 0 of 3
        _sample("e2", "explicit", [1], [2]), _sample("e2", "explicit", [3], [2]), _sample("e2", "explicit", [-1], [2]),
        # implicit q3 (listed first, reported after explicit): 2 of 3, either of two truths counts
        _sample("i3", "implicit", [4], [4, 5]), _sample("i3", "implicit", [5], [4, 5]),
        _sample("i3", "implicit", [6], [4, 5]),
    ]
    recs = recs[6:] + recs[:6]
    out = sampled_summary(recs, 3)
    assert out["samples"] == 3 and out["count"] == 3
    assert out["accuracy"] == pytest.approx(3 / 9)
    assert out["pass_at_n"] == pytest.approx(2 / 3)
    assert list(out["accuracy_by_type"]) == ["explicit", "implicit"]
    assert out["accuracy_by_type"] == pytest.approx({"explicit": 1 / 6, "implicit": 2 / 3})
    assert out["pass_at_n_by_type"] == {"explicit": 0.5, "implicit": 1.0}
    assert out["count_by_type"] == {"explicit": 2, "implicit": 1}


def test_sampled_summary_rejects_broken_groups() -> None:
    a, b = _sample("a", "explicit", [1], [1]), _sample("b", "explicit", [1], [1])
    with pytest.raises(ValueError, match="whole groups of 2"):
        sampled_summary([a, a, b], 2)
    with pytest.raises(ValueError, match="mix queries"):
        sampled_summary([a, b], 2)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        sampled_summary([a], 0)


def test_off_candidate_share_of_parsed_candidate_answers() -> None:
    def rec(qid: str, parsed: list[str] | None, ids: list[int], candidates: list[int]) -> EvalRecord:
        return EvalRecord(qid, "explicit", "", parsed, ids, ["exact"] * len(ids), [1], [], candidates)

    rows = [
        rec("a", ["X"], [1], [1, 2, 3]),  # the truth, listed
        rec("b", ["Y"], [7], [1, 2, 3]),  # a catalog item that is not a candidate
        rec("c", ["Z"], [-1], [1, 2, 3]),  # matches nothing: not a candidate either
        rec("d", None, [], [1, 2, 3]),  # unparsable: counted by ftr, not here
    ]
    assert aggregate(rows, k=1)["overall"]["off_candidate"] == pytest.approx(2 / 3)
    assert aggregate(records(), k=1)["overall"]["off_candidate"] is None  # open task: no candidates


def test_aggregate_without_kg_and_empty() -> None:
    assert aggregate(records(), k=1)["overall"]["condition_satisfaction"] is None
    empty = aggregate([], k=5)
    assert empty["by_type"] == {} and empty["overall"]["count"] == 0 and empty["overall"]["ndcg@5"] == 0.0


def test_write_report_files(tmp_path: Path) -> None:
    result = aggregate(records(), k=2, item_attributes=ATTRS)
    json_path, md_path = write_report(result, tmp_path / "run", "test_metrics")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    md = md_path.read_text()
    assert "| query type | ndcg@2 | recall@2 |" in md
    assert "| explicit | 0.3155 | 0.5000 | 0.2500 | 0.5000 | 0.0000 | 0.5000 | – | 0.2500 | 2 |" in md
    assert "| demographics |" in md and "| overall |" in md and "–" in md  # None shown as a dash
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["test_metrics.json", "test_metrics.md"]
    assert markdown_table(result) in md


def test_write_predictions_jsonl(tmp_path: Path) -> None:
    path = write_predictions_jsonl(records(), tmp_path / "predictions.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3
    assert rows[0] == {
        "query_id": "movie/explicit/1", "type": "explicit", "completion": r"\boxed{A; B}",
        "parsed_titles": ["A", "B"], "matched_item_ids": [1, 2], "match_kinds": ["exact", "fuzzy"],
    }
    assert rows[1]["parsed_titles"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]  # no temp file left


