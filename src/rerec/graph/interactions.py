"""The user–item interactions LightGCN trains on: a seeded per-user leave-out split and BPR triples.

One split and one negative sampler serve both the Lightning data module and the inline trainer, so
the same seed gives the same edges and the same negatives either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from rerec.data.records import Interactions


@dataclass
class InteractionSplit:
    """Indexed, de-duplicated interactions split per user into training and held-out validation edges.

    Users are indexed ``0..U-1`` and items ``0..I-1``; in the LightGCN graph item ``i`` is node ``U + i``.

    Attributes:
        user_ids: Catalog id of every user index, ``(U,)`` int64.
        item_ids: Catalog id of every item index, ``(I,)`` int64.
        train_users, train_items: Training edges (indices), sorted by user then item.
        val_users, val_items: Held-out edges (indices), sorted by user then item.
    """

    user_ids: Tensor
    item_ids: Tensor
    train_users: Tensor
    train_items: Tensor
    val_users: Tensor
    val_items: Tensor

    @property
    def num_users(self) -> int:
        return int(self.user_ids.numel())

    @property
    def num_items(self) -> int:
        return int(self.item_ids.numel())

    def train_keys(self) -> Tensor:
        """Sorted ``user · I + item`` keys of the training edges (membership by ``searchsorted``)."""
        return self.train_users * self.num_items + self.train_items

    def popularity(self) -> Tensor:
        """Training interactions per item, ``(I,)`` float."""
        return torch.bincount(self.train_items, minlength=self.num_items).to(torch.float32)


def split_interactions(
    interactions: Interactions,
    *,
    val_fraction: float = 0.2,
    min_rating: float = 0.0,
    seed: int = 0,
) -> InteractionSplit:
    """Per-user random leave-out split (seeded).

    Interactions with ``rating < min_rating`` are dropped, repeated (user, item) pairs kept once. Each
    user with at least 2 interactions holds out ``max(1, round(val_fraction · n))`` of them (never all:
    one stays in training); users with one interaction keep it in training. ``val_fraction=0`` holds out
    nothing (no validation).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keep = np.asarray(interactions.ratings) >= min_rating
    users = np.asarray(interactions.user_ids, dtype=np.int64)[keep]
    items = np.asarray(interactions.item_ids, dtype=np.int64)[keep]
    if users.size == 0:
        raise ValueError(f"no interaction left (of {len(interactions)}) with rating >= {min_rating}")
    user_ids, u = np.unique(users, return_inverse=True)
    item_ids, i = np.unique(items, return_inverse=True)
    pairs = np.unique(u.astype(np.int64) * item_ids.size + i)  # de-duplicated, sorted by user
    u, i = pairs // item_ids.size, pairs % item_ids.size
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(u.size), u))  # grouped by user, random order inside a user
    counts = np.bincount(u, minlength=user_ids.size)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(u.size, dtype=np.int64)
    rank[order] = np.arange(u.size) - starts[u[order]]
    held = np.where(
        (counts >= 2) & (val_fraction > 0),
        np.minimum(np.maximum(1, np.rint(val_fraction * counts)), counts - 1),
        0,
    )
    is_val = rank < held[u]
    as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return InteractionSplit(
        user_ids=as_long(user_ids),
        item_ids=as_long(item_ids),
        train_users=as_long(u[~is_val]),
        train_items=as_long(i[~is_val]),
        val_users=as_long(u[is_val]),
        val_items=as_long(i[is_val]),
    )


def sample_negatives(
    split: InteractionSplit, users: Tensor, generator: torch.Generator, rounds: int = 5
) -> Tensor:
    """One uniformly drawn item per user that is not among the user's training items.

    Collisions are re-drawn ``rounds`` times, all at once; the few left after that (users who have a
    large share of the catalog) draw from their exact complement. A user who has every item keeps a
    colliding draw (there is no negative for them).
    """
    keys = split.train_keys()
    num_items = split.num_items
    neg = torch.randint(num_items, users.shape, generator=generator)
    if keys.numel() == 0:
        return neg

    def clashes() -> Tensor:
        query = users * num_items + neg
        pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
        return keys[pos] == query

    clash = clashes()
    for _ in range(rounds):
        if not bool(clash.any()):
            return neg
        neg[clash] = torch.randint(num_items, (int(clash.sum()),), generator=generator)
        clash = clashes()
    for row in torch.nonzero(clash).flatten().tolist():
        user = int(users[row])
        lo, hi = torch.searchsorted(keys, torch.tensor([user * num_items, (user + 1) * num_items])).tolist()
        allowed = torch.ones(num_items, dtype=torch.bool)
        allowed[keys[lo:hi] - user * num_items] = False
        free = torch.nonzero(allowed).flatten()
        if free.numel():
            neg[row] = free[torch.randint(free.numel(), (1,), generator=generator)]
    return neg


class PositiveEdges(Dataset):
    """Training edges served by index batches: ``dataset[list_of_indices] -> (users, pos, neg)``."""

    def __init__(self, split: InteractionSplit, seed: int) -> None:
        self.split = split
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return int(self.split.train_users.numel())

    def __getitem__(self, index: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        users = self.split.train_users[idx]
        return users, self.split.train_items[idx], sample_negatives(self.split, users, self.generator)


def bpr_batches(split: InteractionSplit, batch_size: int, seed: int, num_workers: int = 0) -> DataLoader:
    """Every training edge once per pass, as shuffled ``(users, pos, neg)`` batches.

    The order is seeded by ``seed``, the negatives by ``seed + 1``. The batch sampler hands whole index
    lists to :class:`PositiveEdges` (``batch_size=None``) so negatives are drawn once per batch, not per edge.
    """
    sampler = RandomSampler(range(len(split.train_users)), generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        PositiveEdges(split, seed + 1),
        sampler=BatchSampler(sampler, batch_size, drop_last=False),
        batch_size=None,
        num_workers=num_workers,
    )
