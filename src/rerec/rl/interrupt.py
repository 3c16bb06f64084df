"""A clean stop on SIGTERM/SIGINT, and a run summary whatever ends the fit.

Lightning's own SIGTERM handling stops the training loop after the current step with a
``SIGTERMException`` — a ``SystemExit`` with status 0, with no checkpoint written, so a scheduler would
record success and lose the steps since the last periodic checkpoint; SIGINT is a ``KeyboardInterrupt``
that can land in the middle of an optimizer step. :class:`GracefulStop` builds on Lightning's handler:

- the first SIGTERM or SIGINT (:class:`rerec.signals.StopSignals`) sets Lightning's stop flag, so the
  step in progress finishes and the loop stops at its end;
- then a resumable checkpoint is written atomically to the ``ModelCheckpoint``'s ``last.ckpt`` (or
  ``<run folder>/checkpoints/last.ckpt``), the module writes ``summary.json`` marked ``interrupted``, and
  the process exits with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) so that a scheduler
  can requeue it: ``--ckpt_path <that checkpoint>`` continues the run;
- a second signal ends the process at once (killed by that signal).

Any other exception that ends the fit leaves a ``summary.json`` marked ``failed`` with the error.
:class:`~rerec.rl.module.ReRecPolicy` adds this callback itself (``configure_callbacks``).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from rerec.atomic import atomic_path
from rerec.signals import StopSignals, exit_code

__all__ = ["GracefulStop", "interrupt_checkpoint_path"]

log = logging.getLogger("rerec.rl")


def interrupt_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where an interrupted fit leaves its checkpoint: the ``ModelCheckpoint``'s ``last.ckpt``, else
    ``<run folder>/checkpoints/last.ckpt``."""
    ckpt = trainer.checkpoint_callback
    folder = getattr(ckpt, "dirpath", None) if ckpt is not None else None
    if folder:
        return Path(folder) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class GracefulStop(L.Callback):
    """Stop cleanly on SIGTERM/SIGINT: finish the step, checkpoint, ``summary.json`` marked
    ``interrupted``, non-zero exit (see the module docstring). The LightningModule may define
    ``write_summary(status, **details)``; it is called with ``interrupted`` or ``failed``."""

    def __init__(self) -> None:
        self.signals: StopSignals | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        lightning_handler = signal.getsignal(signal.SIGTERM)  # Lightning's: sets trainer.received_sigterm

        def stop_after_this_step(signum: int, frame: Any) -> None:
            if callable(lightning_handler):
                lightning_handler(signum, frame)
            if not trainer.received_sigterm:  # Lightning's handler is not installed (e.g. not the main thread)
                trainer._signal_connector.received_sigterm = True

        self.signals = StopSignals(stop_after_this_step)
        self.signals.install()

    def _restore(self) -> None:
        if self.signals is not None:
            self.signals.restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if trainer.state.fn != TrainerFn.FITTING:
            return
        write_summary = getattr(pl_module, "write_summary", None)
        signum = self.signals.signum if self.signals is not None else None
        if isinstance(exception, SIGTERMException) and signum is not None:
            path = self._checkpoint(trainer)
            name = signal.Signals(signum).name
            if callable(write_summary):
                write_summary("interrupted", signal=name, checkpoint=str(path) if path else None)
            exception.code = exit_code(signum)  # Lightning's SIGTERMException would exit with status 0
            if path is not None:
                log.warning("stopped by %s after RL step %s; continue with --ckpt_path %s", name,
                            getattr(getattr(pl_module, "stats", None), "rl_steps", "?"), path)
            return
        if callable(write_summary):
            try:
                write_summary("failed", error=f"{type(exception).__name__}: {exception}")
            except Exception:  # the original error matters more than the summary
                log.exception("could not write summary.json after the fit failed")

    @staticmethod
    def _checkpoint(trainer: L.Trainer) -> Path | None:
        """Save a resumable checkpoint atomically; ``None`` (logged) when it cannot be written."""
        path = interrupt_checkpoint_path(trainer)
        try:
            if trainer.is_global_zero:
                with atomic_path(path) as tmp:
                    trainer.save_checkpoint(tmp)
            else:
                trainer.save_checkpoint(path)  # every rank takes part; only rank 0 writes
        except Exception:
            log.exception("could not write the checkpoint of the interrupted run to %s", path)
            return None
        return path
