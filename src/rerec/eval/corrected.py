"""The ``corrected`` protocol: what RecBench+'s evaluation means, scored the way ReRec scores itself.

Answers are read by :meth:`rerec.rl.rewards.RecReward.read`, the one parse-and-match path of training
and evaluation, so a policy trained with ReRec is scored here exactly as in its ``validate``/``test``
reports. Each rule, and how it differs from the ``official`` protocol (:mod:`rerec.eval.official`;
worked examples in docs/recbench-scoring.md):

1. **Parsing** (:func:`rerec.data.answer.parse_answer`, ``sep`` format by default). Titles are the
   ``[SEP]``-separated parts, stripped of spaces and of quotes around them; text before the list (on the
   first part's earlier lines) and after it is not a title; **empty parts are dropped** (official: kept,
   and counted in precision's denominator). ``k`` > 0 keeps the first k titles, without padding.
2. **FTR** = 1 when the answer holds **no parsable list** (official: when it has no ``[SEP]``, so a
   one-title answer is a failure there and a list here).
3. **Matching.** Titles are matched to catalog items by :class:`~rerec.data.matching.TitleMatcher`
   (articles, punctuation, case, accents; **years compared on both sides**, never more than one year
   apart; no sequel for its original), and the ground truth is the query's catalog ids as the release
   reader resolved them (official: difflib ratio ≥ 0.8 between the year-stripped answer and the
   ground-truth title *with* its year, so short titles can never match).
4. **Metrics** (:mod:`rerec.eval.metrics`): a repeated item is a hit once (official: each time, in
   NDCG); recall = distinct hits / |truth|; precision = distinct hits / K (the number of titles when
   ``k`` = 0); NDCG's **ideal DCG is over min(|truth|, K)** hits (K unbounded when ``k`` = 0).
5. **Condition queries**: ``existence_in_catalog_ratio`` = titles matched to a catalog item / titles;
   ``satisfied_ratio`` = distinct matched items that are ground truth or satisfy every condition in the
   knowledge graph / distinct matched items. Both are ``None`` when undefined (no title, no item), and
   ``None`` values are left out of the means (official: −1, left out the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerec.data.answer import AnswerFormat
from rerec.data.matching import TitleMatcher
from rerec.data.records import Item, Query
from rerec.data.tasks import Attributes, RecTask, satisfies
from rerec.eval.metrics import ndcg_at_k, precision_at_k, recall_at_k
from rerec.rl.rewards import RecReward, RewardConfig


def score_all(
    responses: Sequence[str],
    queries: Sequence[Query],
    *,
    items: dict[int, Item],
    matcher: TitleMatcher,
    attributes: Attributes,
    k: int = 0,
    answer_format: AnswerFormat = "sep",
) -> list[dict[str, Any]]:
    """Score ``responses[i]`` as the answer to ``queries[i]`` (see the module docstring).

    Returns:
        One dict per answer: ``ndcg``, ``recall``, ``precision``, ``ftr`` (1.0/0.0), ``titles`` (parsed,
        ``None`` when unparsable) and ``item_ids`` (catalog id per title, −1 unmatched); for condition
        queries also ``satisfied_ratio`` and ``existence_in_catalog_ratio`` (``None`` when undefined).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    reader = RecReward(RewardConfig(k=max(k, 1)), items, matcher, max_titles=k or None,
                       answer_format=answer_format)
    batch = reader.read(list(responses), [RecTask(q) for q in queries])
    return [
        _score(titles, ids, query, attributes, k)
        for titles, ids, query in zip(batch.parsed, batch.predicted_ids, queries, strict=True)
    ]


def _score(
    titles: list[str] | None, ids: list[int], query: Query, attributes: Attributes, k: int
) -> dict[str, Any]:
    truth = set(query.truth_item_ids)
    cutoff = k or max(len(ids), len(truth), 1)  # k = 0: every title, ideal DCG over all of the truth
    result: dict[str, Any] = {
        "ndcg": ndcg_at_k(ids, truth, cutoff),
        "recall": recall_at_k(ids, truth, cutoff),
        "precision": precision_at_k(ids, truth, k or len(ids)) if ids else 0.0,
        "ftr": 1.0 if titles is None else 0.0,
    }
    if query.query_type.is_condition_query:
        found = {i for i in ids if i >= 0}
        ok = sum(1 for i in found if i in truth or satisfies(attributes, i, query.conditions))
        result["satisfied_ratio"] = ok / len(found) if found else None
        result["existence_in_catalog_ratio"] = sum(i >= 0 for i in ids) / len(ids) if ids else None
    result["titles"] = titles
    result["item_ids"] = ids
    return result


def mean_of_defined(values: Sequence[float | None]) -> float | None:
    """The mean of the values other than ``None``; ``None`` when none is left."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
