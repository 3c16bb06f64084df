"""Lightning pieces of the curriculum tests: a data module wired like ``RecDataModule`` and a manual-
optimisation "policy" that reports deterministic rollout NDCG (see ``_curriculum_fixtures``)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from _curriculum_fixtures import TaskDataset, make_tasks, mastery_ndcg
from rerec.data.curriculum_callback import GROUP_STATS_KEY, GroupStats
from rerec.data.curriculum import (
    CurriculumConfig,
    CurriculumController,
    CurriculumDataModuleMixin,
    curriculum_of,
)


class TaskDataModule(CurriculumDataModuleMixin, L.LightningDataModule):
    """Data module wired the way ``RecDataModule`` is meant to be."""

    def __init__(
        self, n: int = 24, batch_size: int = 4, config: CurriculumConfig | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        self.query_ids, self.query_types = make_tasks(n)
        self.batch_size = batch_size
        self.config = config or CurriculumConfig()
        self.seed = seed

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.curriculum_controller is None:
            controller = CurriculumController(
                self.query_ids, self.query_types, self.batch_size, self.config, self.seed
            )
            self.attach_curriculum(controller)

    def train_dataloader(self) -> Any:
        return self.curriculum_dataloader(TaskDataset(self.query_ids, self.query_types))


class MasteringPolicy(L.LightningModule):
    """Manual-optimisation module: one training_step = one "rollout batch"; reports NDCG to the curriculum.

    Records, per step, ``(epoch, global_step, query ids)`` in ``served``; per epoch start, the rank's shard
    and the global order in ``shards``; after each epoch boundary, ``ctl.metrics()`` in ``epoch_metrics``.
    With ``out_dir`` set, rank r dumps these and the final curriculum state to ``out_dir/rank{r}.pt``.
    """

    def __init__(self, out_dir: str | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.weight = nn.Parameter(torch.zeros(1))
        self.out_dir = out_dir
        self.served: list[tuple[int, int, list[str]]] = []
        self.shards: list[tuple[int, list[int], list[int]]] = []
        self.epoch_metrics: list[dict[str, float]] = []

    def on_train_epoch_start(self) -> None:
        ctl = curriculum_of(self.trainer)
        assert ctl is not None
        self.shards.append((ctl.epoch, ctl.shard(), ctl.order))

    def training_step(self, batch: dict[str, list[str]], batch_idx: int) -> dict[str, GroupStats]:
        """Statistics reach the curriculum the way the policy's do: returned, for the CurriculumCallback."""
        ids = list(batch["query_id"])
        step = self.global_step
        ndcg = torch.tensor([mastery_ndcg(q, step) for q in ids])
        self.served.append((self.current_epoch, step, ids))
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward((self.weight**2).sum())
        optimizer.step()
        return {GROUP_STATS_KEY: GroupStats(ids, ndcg, torch.zeros(len(ids)))}

    def on_train_epoch_end(self) -> None:
        ctl = curriculum_of(self.trainer)
        assert ctl is not None  # the callback applied the boundary just before this hook
        if ctl.epoch > len(self.epoch_metrics):
            self.epoch_metrics.append(ctl.metrics())

    def on_train_end(self) -> None:
        if self.out_dir is None:
            return
        ctl = curriculum_of(self.trainer)
        assert ctl is not None
        record = {"served": self.served, "shards": self.shards, "state": ctl.state_dict()}
        torch.save(record, f"{self.out_dir}/rank{self.global_rank}.pt")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)
