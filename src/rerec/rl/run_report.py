"""What a person looks at after (and during) an RL fit, beside the run folder's JSON and CSV.

:class:`RunReport` draws ``curves.png`` into the run folder at the end of every fit
(:mod:`~rerec.rl.curves`). When a W&B logger is among the trainer's loggers it also sends: the
per-query-type table after each validation (``val/per_type``), the curriculum's difficulty histogram
at each epoch boundary (``curriculum/difficulty_hist``), and at the end ``curves.png``, the held-out
metrics before and after RL (``val/before_rl/*``, ``val/after_rl/*``, per type, greedy and sampled),
``summary.json`` as the run summary, and, with ``wandb.log_adapters``, the exported adapter or model
as an artifact. A picture or an upload that fails is logged as a warning; it never fails the fit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L

from rerec.data.curriculum import curriculum_of
from rerec.rl.curves import render_run

__all__ = ["RunReport", "log_completions_table", "wandb_loggers", "held_out_metrics"]

log = logging.getLogger("rerec.rl")

PER_TYPE_COLUMNS = ("query_type", "count", "accuracy", "ndcg", "recall", "hr", "ftr", "off_candidate",
                    "condition_satisfaction")


def wandb_loggers(loggers: Iterable[Any]) -> list[Any]:
    """The W&B loggers among ``loggers`` (anything with ``log_table``: Lightning's ``WandbLogger``)."""
    return [lg for lg in loggers if hasattr(lg, "log_table") and hasattr(lg, "experiment")]


def log_completions_table(loggers: Iterable[Any], rows: list[dict[str, Any]]) -> None:
    """The ``completions`` table (rows of :func:`~rerec.rl.completion_rows.completion_rows`) to every W&B
    logger, RAAE's penalised segments wrapped in ``⟦…⟧`` in the ``marked`` column."""
    targets = wandb_loggers(loggers)
    if not targets or not rows:
        return
    from rerec.rl.completion_rows import marked_text

    columns = [c for c in rows[0] if c != "penalised_segments"] + ["penalised", "marked"]
    data = [[r[c] for c in columns[:-2]] + [len(r["penalised_segments"]),
                                            marked_text(r["completion"], r["penalised_segments"])]
            for r in rows]
    for logger in targets:
        logger.log_table(key="completions", columns=columns, data=data)


def per_type_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """Rows of the per-type table from an evaluation report (``val_metrics.json``), overall last."""
    k = result.get("k", 1)

    def row(name: str, m: Mapping[str, Any]) -> list[Any]:
        return [name, m.get("count"), m.get("accuracy"), m.get(f"ndcg@{k}"), m.get(f"recall@{k}"),
                m.get(f"hr@{k}"), m.get("ftr"), m.get("off_candidate"), m.get("condition_satisfaction")]

    return [row(t, m) for t, m in result.get("by_type", {}).items()] + [row("overall", result.get("overall", {}))]


def held_out_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``val_before`` / ``val_after`` of ``summary.json`` as flat ``val/{before,after}_rl/...`` scalars:
    greedy and sampled accuracy, pass@n, overall and per query type."""
    out: dict[str, float] = {}
    for stage, prefix in (("val_before", "val/before_rl"), ("val_after", "val/after_rl")):
        s = summary.get(stage) or {}
        if "accuracy" in s:
            out[f"{prefix}/accuracy"] = s["accuracy"]
        for t, v in (s.get("accuracy_by_type") or {}).items():
            out[f"{prefix}/accuracy/{t}"] = v
        sampled = s.get("sampled") or {}
        if sampled:
            out[f"{prefix}/sampled_accuracy"] = sampled["accuracy"]
            out[f"{prefix}/pass_at_n"] = sampled["pass_at_n"]
            for t, v in (sampled.get("accuracy_by_type") or {}).items():
                out[f"{prefix}/sampled_accuracy/{t}"] = v
    return out


class RunReport(L.Callback):
    """``curves.png`` at the end of a fit, and the W&B tables, histogram, picture and summary (see the
    module docstring). Added by :meth:`ReRecPolicy.configure_callbacks`; nothing to configure. Reads the
    policy's run folder (:meth:`ReRecPolicy.run_dir`, resolved on every rank: ``trainer.log_dir`` is a
    rank-0 broadcast that must not be read in rank-0-only code)."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = wandb_loggers(trainer.loggers)
        path = pl_module.run_dir() / "val_metrics.json"
        if trainer.sanity_checking or not trainer.is_global_zero or not loggers or not path.exists():
            return
        rows = per_type_rows(json.loads(path.read_text(encoding="utf-8")))
        for logger in loggers:
            logger.log_table(key="val/per_type", columns=list(PER_TYPE_COLUMNS), data=rows,
                             step=trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ctl = curriculum_of(trainer)
        loggers = wandb_loggers(trainer.loggers)
        if ctl is None or not loggers or not trainer.is_global_zero:
            return
        import wandb

        for logger in loggers:
            logger.log_metrics({"curriculum/difficulty_hist": wandb.Histogram(ctl.difficulties())},
                               step=trainer.global_step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        run_dir = pl_module.run_dir()
        for logger in trainer.loggers:
            logger.save()  # metrics.csv complete before it is drawn
        picture = None
        try:
            picture = render_run(run_dir, title=f"ReRec fit: {run_dir}")
        except Exception as error:  # a picture must never fail a finished fit
            log.warning("curves.png not drawn: %s", error)
        loggers = wandb_loggers(trainer.loggers)
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
        for logger in loggers:
            try:
                self._send(logger, trainer, run_dir, picture, summary)
            except Exception as error:
                log.warning("W&B: the end-of-fit report was not sent: %s", error)

    @staticmethod
    def _send(logger: Any, trainer: L.Trainer, run_dir: Path, picture: Path | None,
              summary: Mapping[str, Any]) -> None:
        if held := held_out_metrics(summary):
            logger.log_metrics(held, step=trainer.global_step)
        if picture is not None:
            logger.log_image(key="curves", images=[str(picture)], step=trainer.global_step)
        run = logger.experiment
        if summary:
            run.summary.update(json.loads(json.dumps(summary, default=str)))
            run.save(str(run_dir / "summary.json"), base_path=str(run_dir), policy="now")
        options = getattr(logger, "options", None)
        if options is not None and options.log_adapters:
            export = next((run_dir / d for d in ("adapter-final", "model-final") if (run_dir / d).is_dir()), None)
            if export is not None:
                import wandb

                artifact = wandb.Artifact(name=f"{run.name or 'rerec'}-{export.name}".replace("/", "-"), type="model")
                artifact.add_dir(str(export))
                run.log_artifact(artifact)
