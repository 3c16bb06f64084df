"""Ranking metrics with binary relevance, as the RecBench+ evaluation defines them."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


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
