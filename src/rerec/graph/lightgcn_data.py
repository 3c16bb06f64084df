"""User–item interactions for the Lightning LightGCN run (``configs/lightgcn-<dataset>.yaml``).

A data module rather than a plain split so that the CLI config names the interactions (a
``ratings.dat`` file or the embedded synthetic world) and :class:`~rerec.graph.lightgcn_module.LightGCNModule`
reads the graph sizes from it instead of from the config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, SequentialSampler

from rerec.data.movielens import read_ratings
from rerec.data.synthetic import SyntheticWorldConfig, write_world
from rerec.graph.interactions import InteractionSplit, bpr_batches, split_interactions

log = logging.getLogger(__name__)


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
        return bpr_batches(self._split(), self.batch_size, self.seed, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        users = torch.unique(self._split().val_users)
        return DataLoader(users, batch_size=self.eval_batch_size, sampler=SequentialSampler(users))
