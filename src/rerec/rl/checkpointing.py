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
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from rerec.atomic import atomic_write
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


def non_finite_entries(state: Any, prefix: str = "") -> list[tuple[str, int]]:
    """``(key, number of NaN/inf values)`` of every floating-point tensor in ``state`` (nested dicts,
    lists and tuples) that holds any."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            bad = int((~torch.isfinite(state)).sum())
            return [(prefix or "<tensor>", bad)] if bad else []
        return []
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    found: list[tuple[str, int]] = []
    for key, value in items:
        found += non_finite_entries(value, f"{prefix}.{key}" if prefix else str(key))
    return found


def check_finite_checkpoint(checkpoint: dict[str, Any], step: int | None = None) -> None:
    """Raise ``FloatingPointError`` when the weights or optimizer states of ``checkpoint`` hold NaN or
    infinite values: such a checkpoint would only resume a diverged run."""
    bad = non_finite_entries(checkpoint.get("state_dict", {}), "state_dict")
    bad += non_finite_entries(checkpoint.get("optimizer_states", []), "optimizer_states")
    if bad:
        at = f" at step {step}" if step is not None else ""
        raise FloatingPointError(
            f"refusing to write a checkpoint{at}: {len(bad)} tensors hold NaN or infinite values, e.g. "
            f"{', '.join(f'{k} ({n} values)' for k, n in bad[:3])}; the policy diverged (see the "
            "'non-finite' warnings above)"
        )


class CheckpointFileError(ValueError):
    """A checkpoint file cannot be resumed from; the message names the file and what is wrong."""


_SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


def check_checkpoint_file(path: str | os.PathLike[str], required_keys: tuple[str, ...] = ()) -> None:
    """Check that ``path`` is a whole Lightning checkpoint before anything is built for a run from it.

    Names the file and the fault: missing, empty, truncated or corrupt (a PyTorch checkpoint is a zip
    archive whose directory is at its end), not a PyTorch file, a PyTorch file that is no Lightning
    checkpoint, or one without ``required_keys`` (e.g. ``"rerec"`` for :class:`~rerec.rl.module.ReRecPolicy`,
    so another model's checkpoint is refused). Lightning's special values (``last``, ``best``, ``hpc``,
    ``registry``), remote URLs and folders (sharded checkpoints) are left to Lightning.

    Raises:
        CheckpointFileError: with the file's path and the fault.
    """
    text = str(path)
    if text in _SPECIAL_CKPT_PATHS or text.startswith("registry:") or "://" in text:
        return
    p = Path(path)

    def fail(what: str) -> CheckpointFileError:
        return CheckpointFileError(f"checkpoint {p}: {what}")

    if not p.exists():
        raise fail("no such file")
    if p.is_dir():
        return
    size = p.stat().st_size
    if size == 0:
        raise fail("the file is empty (0 bytes): it was never written (a run killed while saving?); "
                   "resume from an earlier checkpoint")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        raise fail(f"not a PyTorch checkpoint (it starts with {head!r}, not a zip archive's 'PK\\x03\\x04')")
    try:
        with zipfile.ZipFile(p) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise fail(f"truncated or corrupt ({size} bytes; {error}): the end of the archive is missing, as "
                   "when a run is killed while saving; resume from an earlier checkpoint") from None
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        raise fail("a zip archive but not a PyTorch checkpoint (no data.pkl inside)")
    try:
        content = torch.load(p, map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:  # torch raises many kinds on damaged archives
        raise fail(f"cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict) or "state_dict" not in content or "pytorch-lightning_version" not in content:
        keys = sorted(map(str, content))[:8] if isinstance(content, dict) else type(content).__name__
        raise fail(f"a PyTorch file but not a Lightning checkpoint (it holds {keys})")
    missing = [k for k in required_keys if k not in content]
    if missing:
        raise fail(f"a Lightning checkpoint of another model: it lacks {missing}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes each checkpoint to a temporary file in the destination's
    folder, flushes it to disk and renames it into place (whatever ``TMPDIR`` is): a crash, a kill or a
    full disk never leaves a partial ``.ckpt``. Remote paths (``s3://``...) use Lightning's writer. The
    ReRec CLI installs it unless the trainer is given another ``CheckpointIO`` plugin."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_write(path, lambda fh: torch.save(checkpoint, fh))


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
