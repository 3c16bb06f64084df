"""Setting up the graph reward scorer (QAS/PAS): where its data comes from, and building it from a run's data."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from rerec.data.contract import RecData
from rerec.graph.alignment import GraphRewardScorer
from rerec.graph.item_graph import Weighting

log = logging.getLogger("rerec.graph")


@dataclass
class GraphRewardConfig:
    """Data of the QAS/PAS graph rewards (their weights are the reward components').

    Args:
        item_embeddings: LightGCN item embeddings for PAS: an ``item_embeddings.pt`` written by
            ``python -m rerec fit --config configs/lightgcn-<dataset>.yaml`` or that run's checkpoint.
            ``null``: train a small LightGCN inline when the release has interactions and
            ``inline_lightgcn_epochs`` > 0, else PAS is disabled (one warning).
        inline_lightgcn_epochs: Epochs of the inline LightGCN (seconds on the synthetic world; use a
            separate LightGCN run for RecBench+ scale).
        inline_lightgcn_dim: Embedding size of the inline LightGCN.
        qas_weighting: ``none`` (|A(p) ∩ A(g)| / |A(g)|) or ``inverse_frequency`` (rare
            attributes count more).
        relation_weights: Optional per-relation multipliers of attribute weights, e.g. ``{Genre: 0.5}``.
        seed: Seed of the inline LightGCN.
    """

    item_embeddings: str | None = None
    inline_lightgcn_epochs: int = 30
    inline_lightgcn_dim: int = 32
    qas_weighting: Weighting = "none"
    relation_weights: dict[str, float] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        # jsonargparse passes ``--...item_embeddings null`` inside subclass init_args as the string "None".
        if self.item_embeddings in ("None", "null", ""):
            self.item_embeddings = None


def build_graph_scorer(config: GraphRewardConfig, data: RecData, scores: Collection[str]) -> GraphRewardScorer | None:
    """The one graph scorer of a run, for the graph ``scores`` its reward components read (``"qas"``,
    ``"pas"``); ``None`` when they read none.

    PAS needs item embeddings: ``config.item_embeddings``, else a small LightGCN trained inline on the
    data's interactions (``inline_lightgcn_epochs`` > 0); with neither the scorer disables PAS with one
    warning. A QAS-only scorer skips all of that.
    """
    if not scores:
        return None
    if "pas" not in scores:
        with warnings.catch_warnings():  # PAS is not read: its "disabled" warning would be noise
            warnings.simplefilter("ignore", RuntimeWarning)
            return GraphRewardScorer.from_triples(
                data.triples, list(data.items), None,
                weighting=config.qas_weighting, relation_weights=config.relation_weights,
            )
    embeddings: Any = config.item_embeddings
    interactions = data.interactions
    if embeddings is None and config.inline_lightgcn_epochs > 0 and interactions is not None and len(interactions):
        from rerec.graph.lightgcn_inline import train_lightgcn

        trained = train_lightgcn(
            interactions, embedding_dim=config.inline_lightgcn_dim, epochs=config.inline_lightgcn_epochs,
            seed=config.seed, num_threads=1,  # small graphs train faster on one thread
        )
        log.info("inline LightGCN for PAS: %s", trained.get("metrics"))
        embeddings = {"item_ids": trained["item_ids"], "embeddings": trained["embeddings"]}
    return GraphRewardScorer.from_triples(
        data.triples, list(data.items), embeddings,
        weighting=config.qas_weighting, relation_weights=config.relation_weights,
    )
