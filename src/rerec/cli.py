"""``rerec {fit,validate,test,predict} --config configs/<recipe>.yaml`` (also ``python -m rerec``).

A ``LightningCLI`` in subclass mode (:class:`rerec.lightning_cli.ReRecCLI`): the YAML names the
LightningModule and LightningDataModule by ``class_path`` (the RL policy ``rerec.rl.module.ReRecPolicy``
with ``rerec.data.datamodule.RecDataModule``, or the LightGCN trainer
``rerec.graph.lightgcn_module.LightGCNModule`` with ``rerec.graph.lightgcn_data.InteractionDataModule``).
Every knob is documented in those classes' docstrings: ``rerec fit --model.help ReRecPolicy``.
The fully resolved config is saved as ``config.yaml`` in the run folder.

This module imports nothing heavy: ``rerec --help`` answers without loading Lightning (which takes
seconds), and the CLI itself is imported on first use.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rerec.lightning_cli import ReRecCLI

HELP = """\
usage: rerec [-h] [-c CONFIG] {fit,validate,test,predict} ...

ReRec: RL fine-tuning of a chat LLM into a recommendation assistant (Lightning CLI).

options:
  -h, --help            Show this help message and exit.
  -c, --config CONFIG   Path to a configuration file in json or yaml format.

subcommands:
  fit                   RL fine-tuning (or LightGCN training), per the recipe
  validate              Per-query-type held-out metrics of a checkpoint
  test                  Per-query-type test metrics of a checkpoint
  predict               Answers to the test queries (predictions.jsonl)

Every sub-command's options: rerec fit --help. A recipe: rerec fit --config configs/tiny.yaml
(add --config configs/loggers/wandb.yaml, or --wandb.enabled true, for Weights & Biases).
"""


def main(args: list[str] | None = None) -> "ReRecCLI | None":
    """Run the CLI (``args`` defaults to ``sys.argv[1:]``) and return the ``LightningCLI`` object (for
    programmatic use); ``--help`` alone prints the sub-commands without importing Lightning."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv in (["-h"], ["--help"]):
        print(HELP, end="")
        if args is None:
            raise SystemExit(0)
        return None
    from rerec.lightning_cli import run_cli

    return run_cli(args)


def console_main() -> int:
    """The ``rerec`` console script: :func:`main` on ``sys.argv``, exit status 0 after a run (a failed run
    raises). The generated script exits with what its entry point returns, so it must not be the CLI
    object, which ``sys.exit`` would print and turn into status 1."""
    main()
    return 0


def __getattr__(name: str) -> Any:
    """``rerec.cli.ReRecCLI`` (and the rest of :mod:`rerec.lightning_cli`) on first use."""
    if name in ("ReRecCLI", "run_cli", "SUBCOMMANDS"):
        import rerec.lightning_cli as cli

        return getattr(cli, name)
    raise AttributeError(f"module 'rerec.cli' has no attribute {name!r}")


if __name__ == "__main__":
    main()
