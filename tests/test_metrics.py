"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from rerec.eval.metrics import (
    condition_satisfaction,
    ftr,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

L2_3, L2_4 = math.log2(3), math.log2(4)


def test_ndcg_with_several_truths() -> None:
    # hits at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4); ideal: 3 truths, K=3 -> 1 + 1/log2(3) + 1/log2(4)
    expected = (1 / L2_3 + 1 / L2_4) / (1 + 1 / L2_3 + 1 / L2_4)
    assert ndcg_at_k([3, 1, 7], {1, 7, 9}, 3) == pytest.approx(expected)
    assert expected == pytest.approx(0.530721, abs=1e-6)
    # K=2 cuts both the list and the ideal: DCG = 1/log2(3), ideal = 1 + 1/log2(3)
    assert ndcg_at_k([3, 1, 7], {1, 7, 9}, 2) == pytest.approx((1 / L2_3) / (1 + 1 / L2_3))
    assert ndcg_at_k([1, 7, 9], {1, 7, 9}, 3) == pytest.approx(1.0)


def test_ndcg_duplicates_count_once() -> None:
    # [1, 1, 2]: 1 at rank 1, the copy wastes rank 2, 2 at rank 3 -> (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert ndcg_at_k([1, 1, 2], {1, 2}, 3) == pytest.approx((1 + 0.5) / (1 + 1 / L2_3))
    assert ndcg_at_k([1, 1, 2], {1, 2}, 3) == pytest.approx(0.919721, abs=1e-6)


def test_recall_with_duplicates() -> None:
    # distinct hits {1, 2} of 4 truths: 0.5, not 0.75 (the second 1 is no new hit)
    assert recall_at_k([1, 1, 2, 5], {1, 2, 3, 4}, 4) == 0.5
    assert recall_at_k([1, 1, 2, 5], {1, 2, 3, 4}, 2) == 0.25
    assert recall_at_k([-1, 2], {2}, 5) == 1.0
    assert recall_at_k([1], set(), 5) == 0.0


def test_precision_and_hit_rate() -> None:
    assert precision_at_k([1, 1, 2, 5], {1, 2, 3, 4}, 4) == 0.5  # 2 distinct hits / K=4
    assert precision_at_k([1], {1}, 5) == 0.2  # K is the denominator even for a short list
    assert precision_at_k([], {1}, 5) == 0.0
    assert hit_rate_at_k([5, 6, 1], {1}, 3) == 1.0
    assert hit_rate_at_k([5, 6, 1], {1}, 2) == 0.0
    assert hit_rate_at_k([1], set(), 2) == 0.0


def test_ftr() -> None:
    assert ftr([["a"], None, ["b", "c"], None]) == 0.5
    assert ftr([None]) == 1.0
    assert ftr([]) == 0.0


def test_condition_satisfaction() -> None:
    attrs = {1: {("Genre", "War"), ("Starring", "Tom Hanks")}, 2: {("Genre", "War")}, 3: set()}
    conditions = [("Genre", "War"), ("Starring", "Tom Hanks")]
    # distinct predictions: 1, 2, 99 (not in the KG) and one unmatched entry -> 4; only 1 satisfies
    assert condition_satisfaction([1, 2, 1, -1, 99], conditions, attrs) == 0.25
    assert condition_satisfaction([1, 2], [("Genre", "War")], attrs) == 1.0
    assert condition_satisfaction([3, None], [("Genre", "War")], attrs) == 0.0
    assert condition_satisfaction([], conditions, attrs) == 0.0
