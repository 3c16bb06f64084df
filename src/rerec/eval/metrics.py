"""Ranking metrics with binary relevance, as the RecBench+ evaluation defines them."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence


def ndcg_at_k(predicted: Sequence[int], truth: Collection[int], k: int) -> float:
    """NDCG@K with binary relevance; the ideal DCG uses ``min(|truth|, K)`` hits.

    A repeated prediction counts once (its first position). Empty truth gives 0.
    """
    if not truth or k <= 0:
        return 0.0
    seen: set[int] = set()
    dcg = 0.0
    for rank, item in enumerate(predicted[:k]):
        if item in truth and item not in seen:
            dcg += 1.0 / math.log2(rank + 2)
        seen.add(item)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(truth), k)))
    return dcg / ideal


# Conventions of the metrics below (shared with ``ndcg_at_k``):
# - ``predicted`` is the ranked list the model gave; only its first K entries count (@K).
# - A repeated item counts once: it is a hit at most once, and its later copies still take up a slot
#   (a duplicate is a wasted recommendation, so precision@K uses K as the denominator).
# - ``-1``/``None`` entries (unmatched titles) are never hits.
# - Empty truth gives 0.


def _distinct_hits(predicted: Sequence[int], truth: Collection[int], k: int) -> int:
    truth_set = set(truth)
    return len({item for item in predicted[: max(k, 0)] if item in truth_set})


def recall_at_k(predicted: Sequence[int], truth: Collection[int], k: int) -> float:
    """Recall@K: distinct ground-truth items among the first K predictions / ``|truth|``."""
    if not truth or k <= 0:
        return 0.0
    return _distinct_hits(predicted, truth, k) / len(set(truth))


def precision_at_k(predicted: Sequence[int], truth: Collection[int], k: int) -> float:
    """Precision@K: distinct ground-truth items among the first K predictions / K.

    K, not the number of predictions, is the denominator (the RecBench+ evaluation pads a short list
    to K), so a list shorter than K is not rewarded for its brevity.
    """
    if not truth or k <= 0:
        return 0.0
    return _distinct_hits(predicted, truth, k) / k


def hit_rate_at_k(predicted: Sequence[int], truth: Collection[int], k: int) -> float:
    """HR@K: 1.0 when any of the first K predictions is a ground-truth item, else 0.0."""
    return 1.0 if truth and _distinct_hits(predicted, truth, k) else 0.0


def ftr(parsed_answers: Sequence[object | None]) -> float:
    """Failed-to-recommend rate: the share of answers that could not be parsed (``None``).

    ``parsed_answers`` holds one entry per query: the parsed title list, or ``None``. No answers → 0.
    """
    if not parsed_answers:
        return 0.0
    return sum(answer is None for answer in parsed_answers) / len(parsed_answers)


def condition_satisfaction(
    predicted_ids: Sequence[int | None],
    conditions: Iterable[tuple[str, str]],
    item_attributes: Mapping[int, set[tuple[str, str]]],
) -> float:
    """Share of the predicted items that exist in the KG and satisfy every condition.

    The denominator is the number of distinct predictions: a repeated id counts once; each unmatched
    entry (``-1``/``None``) counts as one recommendation that satisfies nothing; an id absent from
    ``item_attributes`` (not in the KG) does not satisfy. No predictions → 0.

    Args:
        predicted_ids: Matched catalog ids of the recommended titles (``-1``/``None`` when unmatched).
        conditions: The query's ``(relation, value)`` conditions.
        item_attributes: ``{item_id: {(relation, value), ...}}`` of the knowledge graph
            (``rerec.data.kg_input.item_attributes``).
    """
    required = set(conditions)
    distinct: set[int] = set()
    unmatched = 0
    for item in predicted_ids:
        if item is None or item < 0:
            unmatched += 1
        else:
            distinct.add(item)
    total = len(distinct) + unmatched
    if total == 0:
        return 0.0
    satisfied = sum(1 for item in distinct if item in item_attributes and required <= item_attributes[item])
    return satisfied / total
