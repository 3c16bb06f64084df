"""``python -m rerec {fit,validate,test,predict} --config configs/<recipe>.yaml``.

A ``LightningCLI`` in subclass mode: the YAML names the LightningModule and LightningDataModule by
``class_path`` (the RL policy ``rerec.rl.module.ReRecPolicy`` with ``rerec.data.datamodule.RecDataModule``,
or the LightGCN trainer ``rerec.graph.lightgcn_module.LightGCNModule`` with
``rerec.graph.lightgcn_data.InteractionDataModule``).
Every knob is documented in those classes' docstrings: ``python -m rerec fit --model.help ReRecPolicy``.
The fully resolved config is saved as ``config.yaml`` in the run folder.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from rerec.rl.checkpointing import AtomicCheckpointIO, CheckpointFileError, check_checkpoint_file


class ReRecCLI(LightningCLI):
    """LightningCLI with ReRec's logging set up, atomic checkpoint files (:class:`AtomicCheckpointIO`
    unless ``trainer.plugins`` names another ``CheckpointIO``) and ``--ckpt_path`` checked before the
    run starts (:func:`check_checkpoint_file`)."""

    def before_instantiate_classes(self) -> None:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
        for name in ("rerec",):
            logging.getLogger(name).setLevel(logging.INFO)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        plugins = kwargs.get("plugins", self._get(self.config_init, "trainer", default={}).get("plugins"))
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(**{**kwargs, "plugins": plugins})

    def _parse_ckpt_path(self) -> None:
        # Lightning reads --ckpt_path right after parsing (for its hyper-parameters): check the file first.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path is not None:
            check_checkpoint_file(ckpt_path)
        super()._parse_ckpt_path()

    def _check_ckpt_path(self) -> None:
        """Also refuse a Lightning checkpoint of another model (one without the model's ``checkpoint_keys``)."""
        ckpt_path = self._get(self.config_init, "ckpt_path")
        if ckpt_path is not None:
            check_checkpoint_file(ckpt_path, getattr(self.model, "checkpoint_keys", ()))

    before_fit = before_validate = before_test = before_predict = _check_ckpt_path


def main(args: list[str] | None = None) -> ReRecCLI:
    """Run the CLI (``args`` defaults to ``sys.argv[1:]``). A ``--ckpt_path`` that cannot be resumed from
    exits with one error line naming the file and the fault, before any run folder is made."""
    try:
        return ReRecCLI(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except CheckpointFileError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
