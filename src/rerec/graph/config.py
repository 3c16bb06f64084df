"""Where the policy's graph rewards get their data, and the builder that wires them to a data module."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rerec.graph.alignment import GraphRewardScorer
from rerec.graph.item_graph import Weighting

log = logging.getLogger("rerec.graph")


@dataclass
class GraphRewardConfig:
    """Data of the QAS/PAS graph rewards (weights live in ``reward``).

    Args:
        item_embeddings: LightGCN item embeddings for PAS: an ``item_embeddings.pt`` written by
            ``python -m rerec fit --config configs/lightgcn-<dataset>.yaml`` or that run's checkpoint.
            ``null``: train a small LightGCN inline when the release has interactions and
            ``inline_lightgcn_epochs`` > 0, else PAS is disabled (one warning).
        inline_lightgcn_epochs: Epochs of the inline LightGCN (seconds on the synthetic world; use a
            separate LightGCN run for RecBench+ scale).
        inline_lightgcn_dim: Embedding size of the inline LightGCN.
        qas_weighting: ``none`` (DESIGN's |A(p) ∩ A(g)| / |A(g)|) or ``inverse_frequency`` (rare
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


def build_graph_scorer(config: GraphRewardConfig, reward: Any, dm: Any) -> GraphRewardScorer | None:
    """The scorer for a loaded data module, or ``None`` when both QAS and PAS weights are 0."""
    if not (reward.w_qas or reward.w_pas):
        return None
    if not reward.w_pas:
        return _qas_only(config, dm)
    embeddings: Any = config.item_embeddings
    interactions = dm.release.interactions
    if embeddings is None and config.inline_lightgcn_epochs > 0 and interactions is not None and len(interactions):
        from rerec.graph.lightgcn import train_lightgcn

        trained = train_lightgcn(
            interactions, embedding_dim=config.inline_lightgcn_dim, epochs=config.inline_lightgcn_epochs,
            seed=config.seed, num_threads=1,  # small graphs train faster on one thread
        )
        log.info("inline LightGCN for PAS: %s", trained.get("metrics"))
        embeddings = {"item_ids": trained["item_ids"], "embeddings": trained["embeddings"]}
    # With embeddings still None, the scorer disables PAS with one clear warning.
    return GraphRewardScorer.from_triples(
        dm.release.triples, list(dm.items), embeddings,
        weighting=config.qas_weighting, relation_weights=config.relation_weights,
    )


def _qas_only(config: GraphRewardConfig, dm: Any) -> GraphRewardScorer:
    """A QAS-only scorer; its PAS-disabled warning is expected (w_pas = 0), so it is silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return GraphRewardScorer.from_triples(
            dm.release.triples, list(dm.items), None,
            weighting=config.qas_weighting, relation_weights=config.relation_weights,
        )
