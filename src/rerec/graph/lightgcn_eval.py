"""Recall@k / NDCG@k of LightGCN on a split's held-out edges, next to those of a popularity ranking.

The popularity numbers are logged beside the model's so that a model that learned nothing but item
popularity shows. Users are scored in batches, with their training items masked out of the ranking.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rerec.graph.interactions import InteractionSplit


def _rows_to_dense(crow: Tensor, col: Tensor, rows: Tensor, width: int) -> Tensor:
    """Boolean ``(len(rows), width)`` mask of the CSR rows ``rows``."""
    lengths = crow[rows + 1] - crow[rows]
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), lengths)
    starts = torch.repeat_interleave(crow[rows] - (lengths.cumsum(0) - lengths), lengths)
    mask = torch.zeros(rows.numel(), width, dtype=torch.bool, device=rows.device)
    mask[owner, col[starts + torch.arange(owner.numel(), device=rows.device)]] = True
    return mask


def _csr(rows: Tensor, cols: Tensor, num_rows: int) -> tuple[Tensor, Tensor]:
    """CSR pointers of edges already sorted by row."""
    counts = torch.bincount(rows, minlength=num_rows)
    return torch.cat((torch.zeros(1, dtype=torch.long), counts.cumsum(0))), cols.clone()


def topk_metrics(scores: Tensor, train_mask: Tensor, truth_mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-user Recall@k (``hits / |held-out|``) and NDCG@k (ideal over ``min(|held-out|, k)``) of
    ``scores`` (B, I) with training items excluded from the ranking."""
    k = min(k, scores.size(1))
    top = scores.masked_fill(train_mask, float("-inf")).topk(k, dim=1).indices
    hits = truth_mask.gather(1, top).to(torch.float32)
    n_truth = truth_mask.sum(dim=1).to(torch.float32)
    discount = 1.0 / torch.log2(torch.arange(k, device=scores.device, dtype=torch.float32) + 2.0)
    ideal = torch.cumsum(discount, 0)[(n_truth.clamp(min=1, max=k) - 1).long()]
    recall = hits.sum(dim=1) / n_truth.clamp(min=1)
    ndcg = (hits * discount).sum(dim=1) / ideal
    return recall, ndcg


class HeldOutEvaluator:
    """Recall/NDCG@k of LightGCN and of a popularity ranking on the held-out edges of a split."""

    def __init__(self, split: InteractionSplit, k: int) -> None:
        self.k = k
        self.num_users, self.num_items = split.num_users, split.num_items
        self.train_crow, self.train_col = _csr(split.train_users, split.train_items, split.num_users)
        self.val_crow, self.val_col = _csr(split.val_users, split.val_items, split.num_users)
        self.popularity = split.popularity()
        self.users = torch.unique(split.val_users)

    def to(self, device: torch.device) -> HeldOutEvaluator:
        for name in ("train_crow", "train_col", "val_crow", "val_col", "popularity", "users"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def batch(self, emb: Tensor, users: Tensor) -> dict[str, Tensor]:
        """Per-user metrics of one batch of user indices, ``{name: (B,)}``."""
        train = _rows_to_dense(self.train_crow, self.train_col, users, self.num_items)
        truth = _rows_to_dense(self.val_crow, self.val_col, users, self.num_items)
        scores = emb[users] @ emb[self.num_users :].t()
        recall, ndcg = topk_metrics(scores, train, truth, self.k)
        pop = self.popularity.unsqueeze(0).expand(users.numel(), -1)
        pop_recall, pop_ndcg = topk_metrics(pop, train, truth, self.k)
        k = self.k
        return {
            f"recall@{k}": recall,
            f"ndcg@{k}": ndcg,
            f"pop_recall@{k}": pop_recall,
            f"pop_ndcg@{k}": pop_ndcg,
        }

    def all(self, emb: Tensor, batch_users: int = 1024) -> dict[str, float]:
        """Mean metrics over every validation user."""
        sums: dict[str, float] = {}
        for chunk in self.users.split(batch_users):
            for name, value in self.batch(emb, chunk).items():
                sums[name] = sums.get(name, 0.0) + float(value.sum())
        return {name: s / max(self.users.numel(), 1) for name, s in sums.items()}
