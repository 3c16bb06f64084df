"""How rollout statistics reach the curriculum: the policy's ``training_step`` returns them, this
callback hands them to the data module's :class:`~rerec.data.curriculum.CurriculumController`.

The policy never touches data-module state; any module whose training step returns
``{"group_stats": GroupStats(...)}`` drives the curriculum. The callback also applies the epoch
boundary (before checkpoints are written, so every checkpoint holds the next epoch's order) and logs
``curriculum/*``. :class:`~rerec.data.curriculum.CurriculumDataModuleMixin` registers it with the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from rerec.data.curriculum import curriculum_of

GROUP_STATS_KEY = "group_stats"


@dataclass
class GroupStats:
    """Per-prompt statistics of one training batch's rollouts, in batch order.

    Attributes:
        query_ids: The batch's query ids.
        mean_ndcg: ``(B,)`` mean NDCG@K of each query's G rollouts (difficulty = 1 − this).
        reward_std: ``(B,)`` std of each group's total rewards.
    """

    query_ids: list[str]
    mean_ndcg: torch.Tensor
    reward_std: torch.Tensor


class CurriculumCallback(L.Callback):
    """Reports each batch's :class:`GroupStats` to the curriculum and applies its epoch boundaries."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        ctl = curriculum_of(trainer)
        stats = outputs.get(GROUP_STATS_KEY) if isinstance(outputs, dict) else None
        if ctl is None or stats is None:
            return
        ctl.report(stats.query_ids, stats.mean_ndcg, stats.reward_std)
        _share_history(ctl, pl_module)
        pl_module.log_dict({k: float(v) for k, v in ctl.metrics().items()}, on_step=True, on_epoch=False,
                           batch_size=len(stats.query_ids))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ctl = curriculum_of(trainer)
        if ctl is not None and ctl.on_epoch_end(trainer):
            pl_module.log_dict({k: float(v) for k, v in ctl.metrics().items()})
            _share_history(ctl, pl_module)


def _share_history(ctl, pl_module: L.LightningModule) -> None:
    """Keep the schedule's history in the module's run summary, when it keeps one (so a summary written
    at any point, an interrupted run's included, holds it)."""
    summary = getattr(pl_module, "summary", None)
    if isinstance(summary, dict):
        summary["curriculum"] = ctl.history
