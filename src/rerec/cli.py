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

from lightning.pytorch.cli import LightningCLI


class ReRecCLI(LightningCLI):
    """LightningCLI with ReRec's logging set up."""

    def before_instantiate_classes(self) -> None:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
        for name in ("rerec",):
            logging.getLogger(name).setLevel(logging.INFO)


def main(args: list[str] | None = None) -> ReRecCLI:
    """Run the CLI (``args`` defaults to ``sys.argv[1:]``)."""
    return ReRecCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
