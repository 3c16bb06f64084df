"""LightGCN trained in a plain loop, without a Trainer, for graphs small enough to train on the spot.

The policy's PAS reward can then get item embeddings without a separate ``fit`` run: the tiny world
trains in seconds. Same split, sampling, loss and metrics as the Lightning module.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rerec.data.records import Interactions
from rerec.graph.interactions import bpr_batches, split_interactions
from rerec.graph.lightgcn_eval import HeldOutEvaluator
from rerec.graph.lightgcn_model import Adjacency, bpr_loss, build_adjacency, make_lightgcn
from rerec.progress import progress


def train_lightgcn(
    interactions: Interactions,
    *,
    embedding_dim: int = 64,
    num_layers: int = 3,
    epochs: int = 20,
    batch_size: int = 2048,
    lr: float = 1e-2,
    lambda_reg: float = 1e-4,
    val_fraction: float = 0.2,
    min_rating: float = 4.0,
    k: int = 20,
    adjacency: Adjacency = "csr",
    seed: int = 0,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Train LightGCN in a plain loop (no Trainer) and return its item embeddings.

    Same split, sampling, loss and metrics as :class:`~rerec.graph.lightgcn_module.LightGCNModule`; the
    caller's global RNG state is left untouched. Arguments as in that module and
    :class:`~rerec.graph.lightgcn_data.InteractionDataModule` (``lr`` defaults to 1e-2, which trains the
    synthetic world well in 30–40 epochs), plus:

    Args:
        epochs: Passes over the training interactions.
        device: Where to train.
        num_threads: CPU threads for this call (restored afterwards); ``None`` keeps torch's setting.
            Small graphs train several times faster on 1 thread when the CPU is shared.

    Returns:
        ``{"item_ids": LongTensor (I,), "embeddings": FloatTensor (I, d), "metrics": {...}}`` where the
        metrics (after the last epoch; empty with ``val_fraction=0``) are ``recall@k``, ``ndcg@k``,
        ``pop_recall@k``, ``pop_ndcg@k`` and ``bpr_loss`` (mean of the last epoch). The dict can be given
        directly to :class:`~rerec.graph.alignment.GraphRewardScorer`.
    """
    device = torch.device(device)
    split = split_interactions(interactions, val_fraction=val_fraction, min_rating=min_rating, seed=seed)
    devices = [device.index or 0] if device.type == "cuda" else []
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model = make_lightgcn(split, embedding_dim, num_layers, adjacency).to(device)
            adj = build_adjacency(split, adjacency).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            loader = bpr_batches(split, batch_size, seed)
            epoch_loss = math.nan
            for _ in progress(range(epochs), desc="LightGCN (inline)", unit="epoch"):
                total, steps = 0.0, 0
                for batch in loader:
                    batch = tuple(t.to(device) for t in batch)
                    loss = bpr_loss(model, adj, split.num_users, batch, lambda_reg)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total, steps = total + float(loss.detach()), steps + 1
                epoch_loss = total / max(steps, 1)
            with torch.no_grad():
                emb = model.get_embedding(adj)
            metrics: dict[str, float] = {"bpr_loss": epoch_loss}
            if split.val_users.numel():
                metrics.update(HeldOutEvaluator(split, k).to(device).all(emb))
    finally:
        torch.set_num_threads(threads)
    return {
        "item_ids": split.item_ids.clone(),
        "embeddings": emb[split.num_users :].float().cpu().contiguous(),
        "metrics": metrics,
    }
