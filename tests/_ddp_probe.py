"""A callback that records, per rank, what a data-parallel fit did: the prompts of every training batch,
the logged metrics, the curriculum's state and a checksum of the policy's weights. The DDP test reads
the files to check that ranks trained on disjoint prompts and ended identical."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from rerec.data.curriculum import curriculum_of


class RankProbe(L.Callback):
    """Writes ``<default_root_dir>/probe-rank<r>.json`` at the end of the fit."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.metrics: list[dict[str, float]] = []
        self.start: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = _checksum(pl_module.policy)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.batches.append([t.query_id for t in batch])
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ctl = curriculum_of(trainer)
        record = {
            "rank": trainer.global_rank, "world_size": trainer.world_size, "batches": self.batches,
            "metrics": self.metrics, "curriculum": ctl.state_dict() if ctl is not None else None,
            "weights_start": self.start, "weights": _checksum(pl_module.policy),
        }
        path = Path(trainer.default_root_dir) / f"probe-rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record, default=str))


def _checksum(model: torch.nn.Module) -> list[float]:
    """Sum and sum of squares of every parameter (float64): equal weights give equal checksums."""
    params = [p.detach().double() for p in model.parameters()]
    return [float(sum(p.sum() for p in params)), float(sum((p * p).sum() for p in params))]
