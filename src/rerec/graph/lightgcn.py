"""LightGCN on the user–item interaction graph: the embedding space of the Preference Alignment Score.

Trained with BPR loss on sampled negatives (``torch_geometric.nn.LightGCN``), validated with
Recall@20 / NDCG@20 on a seeded per-user leave-out split, next to the same metrics of a popularity
ranking (``val/pop_recall@20`` ...) so that a useless model shows. Two ways to train:

- through the CLI, ``python -m rerec fit --config configs/lightgcn-<dataset>.yaml``, with
  :class:`LightGCNModule` and :class:`InteractionDataModule`; at the end of fit the final item
  embeddings are written to ``<run folder>/item_embeddings.pt`` (``{"item_ids", "embeddings"}``, the
  file :class:`~rerec.graph.alignment.GraphRewardScorer` loads) and every checkpoint carries them under
  ``"item_embeddings"``;
- inline, :func:`train_lightgcn`, a plain loop for small graphs (the tiny world trains in seconds).

Propagation uses a pre-normalised ``D^-1/2 A D^-1/2`` adjacency as a ``torch.sparse_csr_tensor``
(``adjacency="csr"``, used with ``LightGCN(normalize=False)``): each ``LGConv`` layer is then one sparse ×
dense product. One forward + backward (64 dims, 3 layers) on a movie-scale graph (6,040 users, 3,883
items, 1.0M interactions), 1 CPU thread: CSR 0.78 s, COO 0.70 s (converted to CSR inside every layer,
with a warning), plain ``edge_index`` re-normalised in every layer 5.0 s — ``benchmarks/reward_throughput.py
--propagation``. ``torch_sparse`` is not installed here, so its ``SparseTensor`` was not measured.
``adjacency="edge_index"`` keeps the plain path for comparison.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler
from torch_geometric.nn import LightGCN
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

from rerec.data.movielens import read_ratings
from rerec.data.records import Interactions
from rerec.data.synthetic import SyntheticWorldConfig, write_world

log = logging.getLogger(__name__)

Adjacency = Literal["csr", "coo", "edge_index"]
EMBEDDINGS_FILE = "item_embeddings.pt"


# ---------------------------------------------------------------------------------------------- data
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


def build_adjacency(split: InteractionSplit, kind: Adjacency = "csr") -> Tensor:
    """The symmetric user–item graph over ``U + I`` nodes for :class:`LightGCN`.

    ``"csr"``/``"coo"``: a sparse tensor holding the normalised ``D^-1/2 A D^-1/2`` (use with
    ``LightGCN(normalize=False)``); ``"edge_index"``: the plain ``(2, 2E)`` edge index that ``LGConv``
    normalises itself in every layer.
    """
    src = split.train_users
    dst = split.train_items + split.num_users
    edge_index = torch.cat((torch.stack((src, dst)), torch.stack((dst, src))), dim=1)
    if kind == "edge_index":
        return edge_index
    n = split.num_users + split.num_items
    degree = torch.bincount(edge_index[0], minlength=n).to(torch.float32)
    inv_sqrt = degree.pow(-0.5).masked_fill_(degree == 0, 0.0)
    value = inv_sqrt[edge_index[0]] * inv_sqrt[edge_index[1]]
    if kind == "csr":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
            return to_torch_csr_tensor(edge_index, value, size=(n, n))
    if kind == "coo":
        return to_torch_coo_tensor(edge_index, value, size=(n, n))
    raise ValueError(f"adjacency must be 'csr', 'coo' or 'edge_index', got {kind!r}")


def make_lightgcn(
    split: InteractionSplit, embedding_dim: int, num_layers: int, adjacency: Adjacency
) -> LightGCN:
    """A ``torch_geometric.nn.LightGCN`` over the split's ``U + I`` nodes (normalising only for edge_index)."""
    return LightGCN(
        split.num_users + split.num_items, embedding_dim, num_layers, normalize=adjacency == "edge_index"
    )


def bpr_loss(
    model: LightGCN, adj: Tensor, num_users: int, batch: tuple[Tensor, Tensor, Tensor], lambda_reg: float
) -> Tensor:
    """Mean BPR loss of ``(user, positive item, negative item)`` index triples, plus L2 on their layer-0
    embeddings."""
    users, pos, neg = batch
    emb = model.get_embedding(adj)
    u, p, n = emb[users], emb[num_users + pos], emb[num_users + neg]
    node_id = torch.cat((users, num_users + pos, num_users + neg))
    return model.recommendation_loss((u * p).sum(-1), (u * n).sum(-1), node_id=node_id, lambda_reg=lambda_reg)


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


class _Evaluator:
    """Recall/NDCG@k of LightGCN and of a popularity ranking on the held-out edges of a split."""

    def __init__(self, split: InteractionSplit, k: int) -> None:
        self.k = k
        self.num_users, self.num_items = split.num_users, split.num_items
        self.train_crow, self.train_col = _csr(split.train_users, split.train_items, split.num_users)
        self.val_crow, self.val_col = _csr(split.val_users, split.val_items, split.num_users)
        self.popularity = split.popularity()
        self.users = torch.unique(split.val_users)

    def to(self, device: torch.device) -> _Evaluator:
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


class _PositiveEdges(Dataset):
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


def _batches(split: InteractionSplit, batch_size: int, seed: int, num_workers: int = 0) -> DataLoader:
    sampler = RandomSampler(range(len(split.train_users)), generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        _PositiveEdges(split, seed + 1),
        sampler=BatchSampler(sampler, batch_size, drop_last=False),
        batch_size=None,
        num_workers=num_workers,
    )


class InteractionDataModule(L.LightningDataModule):
    """User–item interactions for LightGCN: a ``ratings.dat`` file or the embedded synthetic world.

    Each epoch visits every training interaction once, in batches of (user, positive, sampled negative)
    triples; validation iterates over the users that have held-out interactions. Meant for one device
    (a movie-scale graph trains in minutes on one GPU); the batch sampler is not sharded for DDP.

    Args:
        ratings_path: A MovieLens-format ``UserID::ItemID::Rating::Timestamp`` file, e.g. RecBench+
            ``data/recbench/movie/ratings.dat`` (downloaded by the user). Leave unset to use the
            synthetic world.
        synthetic: Synthetic-world settings used when ``ratings_path`` is unset (``{}`` = defaults); the
            world is written to ``world_root`` (a no-op when it is already there).
        world_root: Folder of the synthetic world (its ``movie/ratings.dat`` is read).
        min_rating: Interactions rated below this are dropped. The default 4 keeps the positive
            feedback of 1–5 star ratings (the usual MovieLens convention, and the one that gives PAS a
            taste space rather than a popularity axis); 0 keeps every interaction.
        val_fraction: Share of each user's interactions held out for validation (at least 1, never all).
        seed: Seed of the split, of the batch order and of the negative sampling.
        batch_size: BPR triples per training step.
        eval_batch_size: Users per validation step.
        num_workers: DataLoader workers for training batches.
    """

    def __init__(
        self,
        ratings_path: str | None = None,
        synthetic: SyntheticWorldConfig | dict[str, Any] | None = None,
        world_root: str = "data/synthetic",
        min_rating: float = 4.0,
        val_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 8192,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if ratings_path is None and synthetic is None:
            raise ValueError("InteractionDataModule needs ratings_path or synthetic (use {} for the defaults)")
        self.ratings_path = ratings_path
        self.synthetic = synthetic
        self.world_root = world_root
        self.min_rating = min_rating
        self.val_fraction = val_fraction
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.split: InteractionSplit | None = None

    def resolved_ratings_path(self) -> Path:
        """The ``ratings.dat`` read: ``ratings_path``, else the synthetic world's (written if needed)."""
        if self.ratings_path is not None:
            path = Path(self.ratings_path)
            if not path.is_file():
                raise FileNotFoundError(
                    f"ratings file not found: {path} (RecBench+ movie ratings are MovieLens-1M's "
                    "ratings.dat; place it there or set data.init_args.ratings_path)"
                )
            return path
        config = self.synthetic
        if isinstance(config, dict):
            config = SyntheticWorldConfig(**config)
        if not isinstance(config, SyntheticWorldConfig):
            raise TypeError(f"synthetic must be a SyntheticWorldConfig or a dict of its fields, got {config!r}")
        return write_world(self.world_root, config) / "ratings.dat"

    def prepare_data(self) -> None:
        if self.ratings_path is None:
            self.resolved_ratings_path()  # write the synthetic world once, on rank 0

    def setup(self, stage: str | None = None) -> None:
        if self.split is None:
            path = self.resolved_ratings_path()
            self.split = split_interactions(
                read_ratings(path), val_fraction=self.val_fraction, min_rating=self.min_rating, seed=self.seed
            )
            log.info(
                "%s: %d users, %d items, %d train / %d validation interactions",
                path,
                self.split.num_users,
                self.split.num_items,
                self.split.train_users.numel(),
                self.split.val_users.numel(),
            )

    def _split(self) -> InteractionSplit:
        if self.split is None:
            raise RuntimeError("InteractionDataModule.setup() has not run")
        return self.split

    def train_dataloader(self) -> DataLoader:
        return _batches(self._split(), self.batch_size, self.seed, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        users = torch.unique(self._split().val_users)
        return DataLoader(users, batch_size=self.eval_batch_size, sampler=SequentialSampler(users))


# -------------------------------------------------------------------------------------------- model
class LightGCNModule(L.LightningModule):
    """LightGCN (``torch_geometric.nn.LightGCN``) trained with BPR on the data module's interactions.

    The graph sizes come from the data module at ``setup`` (so the config needs no user/item counts);
    a checkpoint records them and the id maps, so ``load_from_checkpoint`` rebuilds the model without the
    data. Logged: ``train/bpr_loss``, ``val/recall@K``, ``val/ndcg@K``, ``val/pop_recall@K``,
    ``val/pop_ndcg@K``.

    Args:
        embedding_dim: Size of the user/item embeddings.
        num_layers: LightGCN propagation layers.
        lr: Adam learning rate.
        lambda_reg: L2 weight on the layer-0 embeddings of each batch (BPR regularisation).
        k: Cut-off of Recall@K / NDCG@K.
        adjacency: Propagation path: ``"csr"`` (pre-normalised ``torch.sparse_csr_tensor``, fastest
            measured), ``"coo"``, or ``"edge_index"`` (plain edge index, for comparison).
        export_path: Where ``item_embeddings.pt`` is written at the end of fit; default
            ``<trainer.log_dir>/item_embeddings.pt``.
    """

    def __init__(
        self,
        embedding_dim: int = 64,
        num_layers: int = 3,
        lr: float = 5e-3,
        lambda_reg: float = 1e-4,
        k: int = 20,
        adjacency: Adjacency = "csr",
        export_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model: LightGCN | None = None
        self.user_ids: Tensor | None = None
        self.item_ids: Tensor | None = None
        self._split: InteractionSplit | None = None
        self._adj: Tensor | None = None
        self._evaluator: _Evaluator | None = None
        self._val_emb: Tensor | None = None

    # -- graph wiring -------------------------------------------------------------------------------
    def _build(self, num_users: int, num_items: int) -> None:
        nodes = num_users + num_items
        if self.model is None or self.model.num_nodes != nodes:
            self.model = LightGCN(
                nodes, self.hparams.embedding_dim, self.hparams.num_layers,
                normalize=self.hparams.adjacency == "edge_index",
            )
        self._num_users = num_users

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        split = getattr(datamodule, "split", None)
        if not isinstance(split, InteractionSplit):
            raise RuntimeError("LightGCNModule needs an InteractionDataModule (its split gives the graph)")
        if self.user_ids is not None and (
            not torch.equal(self.user_ids, split.user_ids) or not torch.equal(self.item_ids, split.item_ids)
        ):
            raise RuntimeError("the checkpoint's users/items differ from the data module's interactions")
        self._split = split
        self.user_ids, self.item_ids = split.user_ids, split.item_ids
        self._build(split.num_users, split.num_items)
        self._adj = build_adjacency(split, self.hparams.adjacency)
        self._evaluator = _Evaluator(split, self.hparams.k)

    def _adjacency(self) -> Tensor:
        if self._adj is None:
            raise RuntimeError(
                "LightGCNModule has no graph: run it through a Trainer with InteractionDataModule"
            )
        if self._adj.device != self.device:
            self._adj = self._adj.to(self.device)
        return self._adj

    def item_embeddings(self) -> dict[str, Tensor]:
        """Final (layer-combined) item embeddings with their catalog ids, on the CPU."""
        if self.model is None or self.item_ids is None:
            raise RuntimeError("LightGCNModule has not been set up")
        with torch.no_grad():
            emb = self.model.get_embedding(self._adjacency())[self._num_users :]
        return {"item_ids": self.item_ids.clone().cpu(), "embeddings": emb.detach().float().cpu().contiguous()}

    # -- training -----------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        assert self.model is not None
        loss = bpr_loss(self.model, self._adjacency(), self._num_users, batch, self.hparams.lambda_reg)
        self.log("train/bpr_loss", loss, prog_bar=True, batch_size=batch[0].numel())
        return loss

    def on_validation_epoch_start(self) -> None:
        assert self.model is not None and self._evaluator is not None
        self._evaluator.to(self.device)
        with torch.no_grad():
            self._val_emb = self.model.get_embedding(self._adjacency())

    def validation_step(self, users: Tensor, batch_idx: int) -> None:
        assert self._evaluator is not None and self._val_emb is not None
        for name, value in self._evaluator.batch(self._val_emb, users).items():
            self.log(f"val/{name}", value.mean(), batch_size=users.numel(), prog_bar=name.startswith("recall"),
                     sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._val_emb = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        assert self.model is not None, "setup() builds the model before the optimizer"
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr)

    # -- checkpoints and export -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightgcn_index"] = {"user_ids": self.user_ids.cpu(), "item_ids": self.item_ids.cpu()}
        checkpoint["item_embeddings"] = self.item_embeddings()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        index = checkpoint.get("lightgcn_index")
        if index is None:
            raise KeyError("not a LightGCNModule checkpoint: 'lightgcn_index' is missing")
        self.user_ids, self.item_ids = index["user_ids"], index["item_ids"]
        self._build(int(self.user_ids.numel()), int(self.item_ids.numel()))

    def export_path(self) -> Path:
        """Where :meth:`on_fit_end` writes ``item_embeddings.pt``."""
        if self.hparams.export_path:
            return Path(self.hparams.export_path)
        folder = self.trainer.log_dir or self.trainer.default_root_dir
        return Path(folder) / EMBEDDINGS_FILE

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            path = self.export_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.item_embeddings(), path)
            log.info("LightGCN item embeddings written to %s", path)


# ------------------------------------------------------------------------------------------- inline
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

    Same split, sampling, loss and metrics as :class:`LightGCNModule`; the caller's global RNG state is
    left untouched. Arguments as in :class:`LightGCNModule` / :class:`InteractionDataModule` (``lr``
    defaults to 1e-2, which trains the synthetic world well in 30–40 epochs), plus:

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
            loader = _batches(split, batch_size, seed)
            epoch_loss = math.nan
            for _ in range(epochs):
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
                metrics.update(_Evaluator(split, k).to(device).all(emb))
    finally:
        torch.set_num_threads(threads)
    return {
        "item_ids": split.item_ids.clone(),
        "embeddings": emb[split.num_users :].float().cpu().contiguous(),
        "metrics": metrics,
    }

