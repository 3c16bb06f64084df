"""Plain-Python, one-prediction-at-a-time oracle of the two graph scores, QAS and PAS.

It states the formulas as directly as possible — Python sets for attribute neighbourhoods, Python lists
for embeddings — and is the oracle the batched :class:`~rerec.graph.alignment.GraphRewardScorer` is
tested against (equality tests in ``tests/test_alignment.py``; the per-rollout baseline of
``benchmarks/reward_throughput.py``). Nothing in training uses it.

It scores one predicted item against a prompt's truths; it is not the reward. The rollout reward (format,
NDCG@K, and QAS / PAS averaged over an answer's first K predictions, with candidate matching and
``require_candidate``) is :class:`rerec.rl.rewards.RecReward` with the components of
:mod:`rerec.rl.reward_components`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from rerec.graph.item_graph import Attribute, ItemAttributeGraph

_EPS = 1e-12  # same floor on a vector norm as torch.nn.functional.normalize


class ReferenceScorer:
    """QAS and PAS of one prediction from plain Python data.

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
