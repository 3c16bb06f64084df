"""Policy checkpointing with Lightning: the ``AdapterExport`` callback (Hugging Face formats beside the
Lightning checkpoints) and helpers that keep only the trainable policy weights in a checkpoint.

Why the helpers: a QLoRA policy's ``state_dict`` carries the whole 4-bit base, and bitsandbytes' extra
entries (``weight.absmax``, ``weight.quant_map``, ...) are rejected by ``load_state_dict`` as unexpected
keys, so a Lightning resume with the full state fails. The LightningModule that owns the policy should
do::

    strict_loading = False  # the frozen base is not in the checkpoint; check_policy_state checks the rest

    def on_save_checkpoint(self, checkpoint):
        checkpoint["state_dict"] = drop_frozen_policy_state(checkpoint["state_dict"], self.policy)

    def on_load_checkpoint(self, checkpoint):
        check_policy_state(checkpoint["state_dict"], self)
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import nn

from rerec.rl.policy_loading import export_adapter, export_pretrained

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^adapter-step(\d+)$")


def _frozen_policy_keys(state_dict: dict[str, Any], policy: nn.Module, prefix: str) -> set[str]:
    trainable = {prefix + name for name, p in policy.named_parameters() if p.requires_grad}
    return {k for k in state_dict if k.startswith(prefix) and k not in trainable}


def drop_frozen_policy_state(
    state_dict: dict[str, Any], policy: nn.Module, prefix: str = "policy."
) -> dict[str, Any]:
    """A checkpoint ``state_dict`` without the policy's frozen weights.

    Keeps every entry outside ``prefix`` and, under it, only the policy's trainable parameters (the LoRA
    weights in modes ``lora``/``qlora``; everything in mode ``full``). The frozen base is rebuilt from
    ``ModelConfig.name_or_path`` when the module is constructed again on resume.

    Args:
        state_dict: the LightningModule's state dict (``checkpoint["state_dict"]``).
        policy: the policy model (``pl_module.policy``).
        prefix: the policy's key prefix in ``state_dict`` (its attribute name plus a dot).
    """
    frozen = _frozen_policy_keys(state_dict, policy, prefix)
    return {k: v for k, v in state_dict.items() if k not in frozen}


def check_policy_state(state_dict: dict[str, Any], module: nn.Module, policy_attr: str = "policy") -> None:
    """Raise when a checkpoint ``state_dict`` lacks an entry that ``module`` needs restored.

    Needed entries: everything in ``module.state_dict()`` except the frozen policy weights that
    :func:`drop_frozen_policy_state` leaves out. Call it from ``on_load_checkpoint`` when
    ``strict_loading = False``, which would otherwise skip missing keys silently.

    Raises:
        KeyError: naming up to five missing keys and their count.
    """
    expected = module.state_dict()
    policy = getattr(module, policy_attr)
    needed = set(expected) - _frozen_policy_keys(expected, policy, policy_attr + ".")
    missing = sorted(needed - set(state_dict))
    if missing:
        raise KeyError(
            f"checkpoint state_dict lacks {len(missing)} entries that {type(module).__name__} needs, e.g. "
            f"{missing[:5]}; was it saved from a different policy (mode, LoRA rank or target modules)?"
        )


class AdapterExport(Callback):
    """Export the policy's peft adapter at every Lightning checkpoint and at the end of fit.

    The LightningModule must expose the Hugging Face model as ``policy`` (a ``PeftModel`` or a
    ``PreTrainedModel``) and, optionally, its tokenizer as ``tokenizer`` (saved beside the adapter).

    - At each checkpoint save: ``<dirpath>/adapter-step<N>/`` (``N`` = ``trainer.global_step``).
    - At the end of fit: ``<run_dir>/adapter-final/``, where ``run_dir`` is ``trainer.log_dir`` (the
      logger's version folder, or ``default_root_dir`` without a logger).

    Each folder holds ``adapter_config.json`` + ``adapter_model.safetensors`` (+ tokenizer files), is
    loadable with ``PeftModel.from_pretrained(base, folder)``, and is written atomically (temporary
    folder, then rename). Only global rank 0 writes.

    Full fine-tuning (``policy`` is not a ``PeftModel``): nothing is exported at checkpoints — the
    Lightning checkpoint already holds every weight, and duplicating a whole model per checkpoint would
    double the disk use; this is logged once. At the end of fit the model is saved with
    ``save_pretrained`` to ``<run_dir>/model-final/`` instead.

    Args:
        dirpath: folder for the per-checkpoint exports; default: the ``ModelCheckpoint`` callback's
            ``dirpath``, else ``<run_dir>/checkpoints``.
        max_keep: keep only the newest ``max_keep`` ``adapter-step<N>`` folders in ``dirpath`` (older ones
            are deleted after each export); ``None`` keeps them all.
    """

    def __init__(self, dirpath: str | None = None, max_keep: int | None = None) -> None:
        if max_keep is not None and max_keep < 1:
            raise ValueError(f"AdapterExport.max_keep must be >= 1 or None, got {max_keep}")
        self.dirpath = dirpath
        self.max_keep = max_keep
        self._last_step: int | None = None
        self._warned_full = False

    @staticmethod
    def _policy(pl_module: pl.LightningModule) -> tuple[Any, Any]:
        policy = getattr(pl_module, "policy", None)
        if policy is None:
            raise AttributeError(
                f"AdapterExport needs the LightningModule to expose its Hugging Face model as `policy`; "
                f"{type(pl_module).__name__} has none"
            )
        return policy, getattr(pl_module, "tokenizer", None)

    @staticmethod
    def _is_peft(model: Any) -> bool:
        from peft import PeftModel

        return isinstance(model, PeftModel)

    def _checkpoint_dir(self, trainer: pl.Trainer, run_dir: Path) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        ckpt = trainer.checkpoint_callback
        ckpt_dir = getattr(ckpt, "dirpath", None) if ckpt is not None else None
        return Path(ckpt_dir) if ckpt_dir else run_dir / "checkpoints"

    @staticmethod
    def _run_dir(trainer: pl.Trainer) -> Path:
        # trainer.log_dir broadcasts from rank 0: every rank must call it, before any rank-0-only branch.
        return Path(trainer.log_dir or trainer.default_root_dir)

    def _prune(self, folder: Path) -> None:
        if self.max_keep is None:
            return
        steps = sorted(
            (int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
        )
        for _, old in steps[: -self.max_keep]:
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed old adapter export %s (max_keep=%d)", old, self.max_keep)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Export ``adapter-step<N>`` beside the checkpoint being saved (once per global step)."""
        folder = self._checkpoint_dir(trainer, self._run_dir(trainer))
        if not trainer.is_global_zero or trainer.global_step == self._last_step:
            return  # the same step can be checkpointed twice (e.g. top-k and last)
        policy, tokenizer = self._policy(pl_module)
        if not self._is_peft(policy):
            if not self._warned_full:
                log.info(
                    "AdapterExport: full fine-tuning has no adapter; checkpoints hold the weights, and the "
                    "model is saved with save_pretrained at the end of fit"
                )
                self._warned_full = True
            return
        out = export_adapter(policy, folder / f"adapter-step{trainer.global_step}", tokenizer)
        self._last_step = trainer.global_step
        log.info("exported adapter at step %d to %s", trainer.global_step, out)
        self._prune(folder)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Export ``adapter-final`` (or ``model-final`` for full fine-tuning) into the run folder."""
        run_dir = self._run_dir(trainer)
        if not trainer.is_global_zero:
            return
        policy, tokenizer = self._policy(pl_module)
        if self._is_peft(policy):
            out = export_adapter(policy, run_dir / "adapter-final", tokenizer)
        else:
            out = export_pretrained(policy, run_dir / "model-final", tokenizer)
        log.info("exported final policy to %s", out)
