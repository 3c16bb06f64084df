"""Weights & Biases as a first-class logger: one option turns it on for any recipe.

``--wandb.enabled true`` (or ``--config configs/loggers/wandb.yaml`` after the recipe) adds a
:class:`ReRecWandbLogger` *beside* the recipe's CSV logger, so the run folder (``metrics.csv``,
``summary.json``, ``curves.png``...) is written exactly as without W&B. The W&B run is named after the
recipe and the run folder (``tiny-v3`` for ``runs/tiny/rerec/version_3``, grouped by recipe), its
config is the fully resolved config, and its metrics are grouped by prefix so W&B's default workspace
lays them out in sections: ``train/`` (TRL's vocabulary: ``train/reward``, ``train/kl``,
``train/clip_ratio/...``, ``train/time/...``), ``rewards/<component>/``, ``curriculum/`` and ``val/``.

Credentials are checked before W&B is started, so a run never stops at a login prompt: with
``WANDB_MODE=offline`` (or ``wandb.offline: true``) the run is written locally for ``wandb sync``;
without an API key (``WANDB_API_KEY`` or a ``~/.netrc`` entry from ``wandb login``) the logger warns
once and falls back to offline mode.
"""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

__all__ = ["WandbOptions", "ReRecWandbLogger", "wandb_mode", "wandb_metric_name"]

log = logging.getLogger("rerec.wandb")

#: Prefixes kept as they are; every other scalar goes under ``train/``.
SECTIONS = ("train/", "rewards/", "curriculum/", "val/", "test/", "trainer/")
#: The before/after-RL evaluations join the ``val/`` section.
RENAMED = {"val_before/": "val/before_rl/", "val_after/": "val/after_rl/"}


@dataclass
class WandbOptions:
    """Send the run to Weights & Biases as well (``--wandb.enabled true``, or
    ``--config configs/loggers/wandb.yaml`` after the recipe). The run folder is written as without it.

    Args:
        enabled: Add W&B as a second logger beside the recipe's CSV logger.
        project: W&B project (default: ``$WANDB_PROJECT``, else ``rerec``).
        name: Run name (default: the recipe's file stem and the run folder's version, ``tiny-v3``).
        group: Run group (default: the recipe's file stem, so its runs sit together).
        entity: W&B entity (team or user; default: your default entity).
        tags: Run tags.
        offline: Write the run locally only (upload later with ``wandb sync``); also on with
            ``WANDB_MODE=offline``, and chosen with a warning when no API key is found.
        log_adapters: At the end of a fit, upload ``adapter-final/`` (or ``model-final/``) as a
            ``model`` artifact. Off by default: full models are large.
    """

    enabled: bool = False
    project: str | None = None
    name: str | None = None
    group: str | None = None
    entity: str | None = None
    tags: list[str] = field(default_factory=list)
    offline: bool = False
    log_adapters: bool = False


def _has_netrc_key(host: str) -> bool:
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_mode(offline: bool = False) -> tuple[str, str | None]:
    """``(mode, warning)``: ``offline`` when asked (``offline`` or ``WANDB_MODE=offline``/``dryrun``),
    ``disabled`` with ``WANDB_MODE=disabled``, ``online`` when an API key is found, and otherwise
    ``offline`` with a warning saying why and how to upload the run later. Never prompts."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if offline or env in ("offline", "dryrun"):
        return "offline", None
    if env == "disabled":
        return "disabled", None
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    if os.environ.get("WANDB_API_KEY") or _has_netrc_key(host):
        return "online", None
    return "offline", (
        f"W&B: no API key found (WANDB_API_KEY is unset and ~/.netrc has no entry for {host}) and "
        "WANDB_MODE is not 'offline': logging offline instead. Run `wandb login` for online runs, or "
        "upload this one later with `wandb sync <its wandb/offline-run-* folder>`."
    )


def wandb_metric_name(key: str) -> str:
    """The W&B name of a logged metric: sections by prefix (``reward`` → ``train/reward``,
    ``val_before/accuracy`` → ``val/before_rl/accuracy``, ``rewards/ndcg/mean`` unchanged)."""
    for old, new in RENAMED.items():
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith(SECTIONS) or key == "epoch":
        return key
    return f"train/{key}"


class ReRecWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` with ReRec's metric sections, a credentials check before start-up
    and the run finished when the fit ends (so an offline run is complete on disk).

    Args:
        options: What :class:`WandbOptions` asked for.
        default_name: Run name when ``options.name`` is unset.
        default_group: Run group when ``options.group`` is unset.
        save_dir: Parent of the ``wandb/`` folder (``$WANDB_DIR`` wins when set).
        config: The resolved config, sent as the run's config.
        job_type: The sub-command (``fit``, ``validate``, ...).
    """

    def __init__(self, options: WandbOptions, default_name: str | None = None, default_group: str | None = None,
                 save_dir: str | Path = ".", config: Mapping[str, Any] | None = None,
                 job_type: str | None = None) -> None:
        mode, warning = wandb_mode(options.offline)
        if warning:
            log.warning(warning)
        self.mode = mode
        self.options = options
        self._finished = False
        kwargs: dict[str, Any] = {"mode": mode}
        for key, value in (("entity", options.entity), ("group", options.group or default_group),
                           ("tags", list(options.tags) or None), ("config", dict(config) if config else None),
                           ("job_type", job_type)):
            if value is not None:
                kwargs[key] = value
        super().__init__(
            name=options.name or default_name,
            save_dir=os.environ.get("WANDB_DIR") or str(save_dir),
            project=options.project or os.environ.get("WANDB_PROJECT") or "rerec",
            **kwargs,
        )

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Scalars go to their section (:func:`wandb_metric_name`); tables and media keep their key."""
        if self._finished:
            return
        named = {wandb_metric_name(k) if isinstance(v, (int, float)) else k: v for k, v in metrics.items()}
        super().log_metrics(named, step)

    def finalize(self, status: str) -> None:
        """Finish the W&B run (Lightning leaves it open until the process exits): an offline run is then
        complete on disk, and a later fit in the same process starts its own run."""
        super().finalize(status)
        if self._experiment is not None and not self._finished:
            self._experiment.finish(exit_code=0 if status == "success" else 1)
            self._finished = True
