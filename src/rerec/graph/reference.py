"""Plain-Python, one-rollout-at-a-time reference of the dual-graph reward (DESIGN §1.1).

It states the formulas as directly as possible — Python sets for attribute neighbourhoods, Python lists
for embeddings — and exists to check the batched :class:`~rerec.graph.alignment.GraphRewardScorer`
(equality tests) and to measure it against (``benchmarks/reward_throughput.py``). Nothing in training
uses it.

Total reward of one rollout::

    r = w_fmt·format + w_rec·rec + w_qas·QAS + w_pas·PAS
    format = +0.5 when the answer parses, else -0.5
    rec    = NDCG@K of the matched titles, or -0.5 when the answer does not parse
    QAS, PAS of the top-ranked (first) recommended item; 0 when it is unmatched or the answer unparsable
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from rerec.data.answer import parse_answer
from rerec.eval.metrics import ndcg_at_k
from rerec.graph.item_graph import Attribute, ItemAttributeGraph

FORMAT_OK = 0.5
FORMAT_BAD = -0.5
REC_UNPARSABLE = -0.5
_EPS = 1e-12  # same floor on a vector norm as torch.nn.functional.normalize


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward components (defaults: the released reference code).

    Args:
        w_fmt: Weight of the format term (+0.5 parsable, -0.5 not).
        w_rec: Weight of the recommendation term (NDCG@K; -0.5 when unparsable).
        w_qas: Weight of the Query Alignment Score.
        w_pas: Weight of the Preference Alignment Score.
        k: Cut-off K of NDCG@K; 1 for the candidate task (one title in the box).
    """

    w_fmt: float = 0.1
    w_rec: float = 1.0
    w_qas: float = 0.01
    w_pas: float = 0.01
    k: int = 1


class ReferenceScorer:
    """Per-rollout QAS/PAS/total from plain Python data.

    Args:
        attributes: ``{item_id: set of (relation, value)}``; an item absent here is "not in the graph".
        attribute_weights: ``{(relation, value): weight}`` for weighted QAS, ``None`` to count attributes.
        item_embeddings: ``{item_id: vector}``; ``None`` disables PAS (always 0).
    """

    def __init__(
        self,
        attributes: Mapping[int, set[Attribute] | frozenset[Attribute]],
        attribute_weights: Mapping[Attribute, float] | None = None,
        item_embeddings: Mapping[int, Sequence[float]] | None = None,
    ) -> None:
        self.attributes = {int(i): frozenset(a) for i, a in attributes.items()}
        self.attribute_weights = None if attribute_weights is None else dict(attribute_weights)
        self.item_embeddings = None
        if item_embeddings is not None:
            self.item_embeddings = {int(i): [float(x) for x in v] for i, v in item_embeddings.items()}

    @classmethod
    def from_graph(
        cls, graph: ItemAttributeGraph, item_embeddings: Mapping[str, torch.Tensor] | None = None
    ) -> ReferenceScorer:
        """Copy an :class:`ItemAttributeGraph` (and an ``{"item_ids", "embeddings"}`` dict) into Python data."""
        attributes = {int(i): graph.attributes_of(int(i)) for i in graph.item_ids.tolist()}
        weights = None
        if graph.weighted:
            weights = {a: graph.attribute_weight(a) for a in graph.attributes}
        embeddings = None
        if item_embeddings is not None:
            ids = item_embeddings["item_ids"].tolist()
            vectors = item_embeddings["embeddings"].to(torch.float32).tolist()
            embeddings = dict(zip(ids, vectors, strict=True))
        return cls(attributes, weights, embeddings)

    def _weight(self, attributes: frozenset[Attribute] | set[Attribute]) -> float:
        if self.attribute_weights is None:
            return float(len(attributes))
        return math.fsum(self.attribute_weights[a] for a in attributes)

    def qas(self, pred: int, truths: Sequence[int]) -> float:
        """``|A(p) ∩ A(g)| / |A(g)|`` (weight sums when weighted), ``A(g)`` = ∩ of the truths' sets."""
        truths = [t for t in truths if t != -1]
        if pred == -1 or pred not in self.attributes or not truths:
            return 0.0
        common: frozenset[Attribute] | None = None
        for t in truths:
            neighbourhood = self.attributes.get(t, frozenset())
            common = neighbourhood if common is None else common & neighbourhood
        denominator = self._weight(common) if common else 0.0
        if denominator <= 0.0:
            return 0.0
        return self._weight(self.attributes[pred] & common) / denominator

    def pas(self, pred: int, truths: Sequence[int]) -> float:
        """Max cosine similarity between the prediction's and each truth's embedding (0 when none)."""
        if self.item_embeddings is None or pred not in self.item_embeddings:
            return 0.0
        p = self.item_embeddings[pred]
        p_norm = max(math.sqrt(sum(x * x for x in p)), _EPS)
        best: float | None = None
        for t in truths:
            if t == -1 or t not in self.item_embeddings:
                continue
            v = self.item_embeddings[t]
            v_norm = max(math.sqrt(sum(x * x for x in v)), _EPS)
            cosine = sum(a * b for a, b in zip(p, v, strict=True)) / (p_norm * v_norm)
            best = cosine if best is None else max(best, cosine)
        return 0.0 if best is None else best

    def reward(
        self,
        completion: str,
        truths: Sequence[int],
        matcher: object,
        weights: RewardWeights = RewardWeights(),
    ) -> dict[str, float]:
        """All components and the total of one rollout.

        Args:
            completion: The model's text.
            truths: Ground-truth catalog ids (-1 entries are ignored).
            matcher: A ``rerec.data.matching.TitleMatcher`` (anything with ``match_many(titles)`` returning
                objects with ``item_id``).
            weights: Component weights and K.

        Returns:
            ``{"format", "rec", "qas", "pas", "total"}``.
        """
        titles = parse_answer(completion, max_titles=1 if weights.k == 1 else weights.k)
        if titles is None:
            fmt, rec, qas, pas = FORMAT_BAD, REC_UNPARSABLE, 0.0, 0.0
        else:
            matches = matcher.match_many(titles)  # type: ignore[attr-defined]
            ids = [-1 if m.item_id is None else int(m.item_id) for m in matches]
            truth_set = {t for t in truths if t != -1}
            fmt, rec = FORMAT_OK, ndcg_at_k(ids, truth_set, weights.k)
            qas, pas = self.qas(ids[0], truths), self.pas(ids[0], truths)
        total = weights.w_fmt * fmt + weights.w_rec * rec + weights.w_qas * qas + weights.w_pas * pas
        return {"format": fmt, "rec": rec, "qas": qas, "pas": pas, "total": total}
