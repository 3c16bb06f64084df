"""LightGCN trained by the CLI: ``python -m rerec fit --config configs/lightgcn-<dataset>.yaml``.

Trained with BPR on sampled negatives and validated with Recall@20 / NDCG@20 next to a popularity
ranking, so that a useless model shows. The PAS reward needs only the item embeddings, so at the end of
fit they are written to ``<run folder>/item_embeddings.pt`` (``{"item_ids", "embeddings"}``, the file
:class:`~rerec.graph.alignment.GraphRewardScorer` loads), atomically so that a crash never leaves half
a file for the policy to load; every checkpoint carries them too, under ``"item_embeddings"``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch_geometric.nn import LightGCN

from rerec.atomic import atomic_path
from rerec.graph.interactions import InteractionSplit
from rerec.graph.lightgcn_eval import HeldOutEvaluator
from rerec.graph.lightgcn_model import Adjacency, bpr_loss, build_adjacency
from rerec.rl.peak_memory import peak_memory

log = logging.getLogger(__name__)

EMBEDDINGS_FILE = "item_embeddings.pt"


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
        adjacency: Propagation path: ``"csr"`` (pre-normalised ``torch.sparse_csr_tensor``, the default
            for the reason given in :mod:`rerec.graph.lightgcn_model`), ``"coo"``, or ``"edge_index"``
            (plain edge index, for comparison).
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
        self._evaluator: HeldOutEvaluator | None = None
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
        self._evaluator = HeldOutEvaluator(split, self.hparams.k)

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

    def on_train_epoch_end(self) -> None:
        self.log_dict({f"memory/peak_{k}": v for k, v in peak_memory(self.device).items()}, sync_dist=True,
                      reduce_fx="max")

    def on_fit_end(self) -> None:
        # export_path reads trainer.log_dir, a broadcast from rank 0: every rank reads it, before the
        # rank-0 branch (a rank-0-only broadcast would leave the other ranks out of the collective).
        path = self.export_path()
        log.info("LightGCN fit: peak memory %s",
                 ", ".join(f"{k} {v:.2f} GiB" for k, v in peak_memory(self.device).items()))
        if self.trainer.is_global_zero:
            # Through a handle: torch names the archive inside after a file path, and the temporary
            # one is random, so the same embeddings would not give the same bytes.
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                torch.save(self.item_embeddings(), fh)
            log.info("LightGCN item embeddings written to %s", path)
