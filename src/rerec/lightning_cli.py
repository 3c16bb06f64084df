"""``ReRecCLI``: the ``LightningCLI`` behind ``rerec`` / ``python -m rerec`` (:mod:`rerec.cli`).

A ``LightningCLI`` in subclass mode: the YAML names the LightningModule and LightningDataModule by
``class_path`` (the RL policy ``rerec.rl.module.ReRecPolicy`` with ``rerec.data.datamodule.RecDataModule``,
or the LightGCN trainer ``rerec.graph.lightgcn_module.LightGCNModule`` with
``rerec.graph.lightgcn_data.InteractionDataModule``).
Every knob is documented in those classes' docstrings: ``python -m rerec fit --model.help ReRecPolicy``.
The fully resolved config is saved as ``config.yaml`` in the run folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from rerec.progress import progress_enabled
from rerec.rl.checkpointing import AtomicCheckpointIO, CheckpointFileError, check_checkpoint_file
from rerec.wandb_logger import WandbOptions

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class ReRecCLI(LightningCLI):
    """LightningCLI with ReRec's logging set up, atomic checkpoint files (:class:`AtomicCheckpointIO`
    unless ``trainer.plugins`` names another ``CheckpointIO``), ``--ckpt_path`` checked before the
    run starts (:func:`check_checkpoint_file`), W&B by one option (``--wandb.enabled true``,
    :class:`~rerec.wandb_logger.WandbOptions`) and Lightning's progress bar only on a terminal
    (:func:`~rerec.progress.progress_enabled`)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(WandbOptions, "wandb", help="Weights & Biases (rerec.wandb_logger.WandbOptions)")

    def before_instantiate_classes(self) -> None:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
        for name in ("rerec",):
            logging.getLogger(name).setLevel(logging.INFO)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        plugins = kwargs.get("plugins", self._get(self.config_init, "trainer", default={}).get("plugins"))
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs["plugins"] = plugins
        callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
        if not progress_enabled() and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["enable_progress_bar"] = False  # not a terminal, or CI: no bar in the logs
        trainer = super().instantiate_trainer(**kwargs)
        self._add_wandb(trainer)
        return trainer

    def _add_wandb(self, trainer: Trainer) -> None:
        """With ``wandb.enabled``, W&B joins the recipe's loggers (after them: the run folder stays the
        first logger's), named after the recipe and the run folder's version."""
        options = self._get(self.config_init, "wandb")
        if options is None or not options.enabled:
            return
        from rerec.wandb_logger import ReRecWandbLogger

        recipe = self._recipe_name()
        version = getattr(trainer.loggers[0], "version", None) if trainer.loggers else None
        name = f"{recipe}-v{version}" if isinstance(version, int) else recipe
        config = json.loads(json.dumps(self.config[self.subcommand].as_dict(), default=str))
        logger = ReRecWandbLogger(options, default_name=name, default_group=recipe,
                                  save_dir=trainer.default_root_dir, config=config, job_type=self.subcommand)
        trainer.loggers = [*trainer.loggers, logger]

    def _recipe_name(self) -> str:
        """The stem of the first ``--config`` that is not under ``configs/loggers/`` (``tiny``)."""
        paths = [Path(str(p)) for p in (self.config[self.subcommand].get("config") or [])]
        recipes = [p for p in paths if p.parent.name != "loggers"]
        return recipes[0].stem if recipes else "rerec"

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


def run_cli(args: list[str] | None = None) -> ReRecCLI:
    """Run the CLI (``args`` defaults to ``sys.argv[1:]``). A ``--ckpt_path`` that cannot be resumed from
    exits with one error line naming the file and the fault, before any run folder is made."""
    try:
        return ReRecCLI(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "rerec", **{c: {"prog": f"rerec {c}"} for c in SUBCOMMANDS}},
            args=args,
        )
    except CheckpointFileError as error:
        raise SystemExit(f"error: {error}") from None
