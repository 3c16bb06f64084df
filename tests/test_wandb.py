"""W&B as a logger: a short offline fit through the real CLI with ``--wandb.enabled true``, read back
from the offline run's transaction log (history keys by section, tables, picture, summary, config),
and the run started without any credentials (a warning and an offline run, no prompt, no hang)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _cli_args import fit_args
from _wandb_offline import OfflineRun, read_offline_run
from rerec.cli import main
from rerec.wandb_logger import wandb_metric_name, wandb_mode

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def offline_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OfflineRun]:
    tmp = tmp_path_factory.mktemp("wandb")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DIR", str(tmp / "wandb-dir"))
    mp.setenv("WANDB_SILENT", "true")
    try:
        main(["fit", *fit_args(tmp, "--trainer.max_steps=2", "--trainer.val_check_interval=2",
                               "--model.init_args.eval_samples=2", "--model.init_args.log_completions_every_n_steps=1",
                               "--config=configs/loggers/wandb.yaml", "--wandb.log_adapters=true")])
    finally:
        mp.undo()
    run_dir = next((tmp / "runs" / "rerec").glob("version_*"))
    folder = next((tmp / "wandb-dir" / "wandb").glob("offline-run-*"))
    return run_dir, read_offline_run(folder)


def test_offline_run_has_the_sections_tables_and_summary(offline_fit: tuple[Path, OfflineRun]) -> None:
    run_dir, run = offline_fit
    keys = run.history_keys
    for key in ("train/reward", "train/reward_std", "train/frac_reward_zero_std", "train/kl", "train/entropy",
                "train/clip_ratio/low_mean", "train/clip_ratio/high_mean", "train/policy_loss",
                "train/completions/mean_length", "train/rollout_tokens_per_s", "train/time/generate_s",
                "train/time/update_s", "rewards/ndcg/mean", "rewards/qas/mean", "curriculum/active",
                "curriculum/mean_difficulty", "val/accuracy", "val/accuracy/explicit",
                "val/before_rl/accuracy", "val/after_rl/sampled_accuracy", "val/after_rl/pass_at_n"):
        assert key in keys, key
    # no scalar left outside a section
    assert not [k for k in keys if "/" not in k and not k.startswith("_") and k != "epoch"]
    tables = {k.split("/_type")[0] for row in run.history for k, v in row.items()
              if k.endswith("/_type") and v == "table-file"}
    assert {"completions", "val/per_type"} <= tables
    assert any(row.get("curriculum/difficulty_hist/_type") == "histogram" for row in run.history)
    assert any(row.get("curves/_type") == "images/separated" for row in run.history)
    table = next((run.folder / "files" / "media" / "table").glob("completions_*.table.json"))
    columns = json.loads(table.read_text())["columns"]
    assert {"completion", "reward", "ndcg", "qas", "pas", "format", "parsed_title", "match_kind", "marked"} <= set(columns)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.summary["headline"]["after"] == summary["headline"]["after"]
    assert run.summary["status"] == "completed" and run.summary["steps"] == 2
    assert run.config["model"]["class_path"] == "rerec.rl.module.ReRecPolicy"  # the resolved config
    assert (run.name, run.project, run.group) == ("tiny-v0", "rerec", "tiny")
    assert run.exit_code == 0
    assert ("tiny-v0-model-final", "model") in run.artifacts  # wandb.log_adapters (model-final: full fine-tuning)
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "metrics.csv").exists()  # the run folder is written as without W&B


def test_metric_sections() -> None:
    assert wandb_metric_name("reward") == "train/reward"
    assert wandb_metric_name("clip_ratio/low_mean") == "train/clip_ratio/low_mean"
    assert wandb_metric_name("rewards/ndcg/mean") == "rewards/ndcg/mean"
    assert wandb_metric_name("val_before/accuracy") == "val/before_rl/accuracy"
    assert wandb_metric_name("curriculum/active") == "curriculum/active"


def _no_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "NETRC", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))


def test_mode_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_credentials(monkeypatch, tmp_path)
    mode, warning = wandb_mode()
    assert mode == "offline" and "no API key" in warning and "wandb login" in warning
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == ("online", None)
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_mode() == ("online", None)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == ("disabled", None)


def test_a_run_without_credentials_warns_and_logs_offline(tmp_path: Path) -> None:
    """A real W&B start with no key and no offline mode: one clear warning, an offline run, no hang."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(SRC), WANDB_SILENT="true")
    code = (
        "from rerec.wandb_logger import ReRecWandbLogger, WandbOptions\n"
        f"lg = ReRecWandbLogger(WandbOptions(enabled=True), default_name='t', save_dir={str(tmp_path)!r})\n"
        "lg.log_metrics({'reward': 1.0}, step=1)\n"
        "lg.finalize('success')\n"
        "print('mode', lg.mode)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mode offline" in done.stdout
    assert "no API key found" in done.stderr
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
