"""End to end through the real CLI: fit on a small synthetic world, then test and predict from the
checkpoint. Budgets are tiny: this checks the wiring and the run-folder contract, not learning (the
learning claim is measured by the main command, see the README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _cli_args import CALLBACKS
from _cli_args import fit_args as _args
from rerec.cli import main

@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("fit")
    main(["fit", *_args(tmp, "--trainer.max_steps=2", f"--trainer.callbacks={CALLBACKS}",
                        "--model.init_args.eval_samples=3")])
    run = next((tmp / "runs" / "rerec").glob("version_*"))
    return tmp, run


def test_fit_writes_the_run_folder_contract(fitted: tuple[Path, Path]) -> None:
    _, run = fitted
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val_before", "val_after"):
        assert set(summary[key]) >= {"accuracy", "accuracy_by_type"}
        assert 0.0 <= summary[key]["accuracy"] <= 1.0
        sampled = summary[key]["sampled"]
        assert sampled["samples"] == 3 and sampled["count"] == summary[key]["count"]
        assert 0.0 <= sampled["accuracy"] <= sampled["pass_at_n"] <= 1.0
        assert set(summary[key]["accuracy_by_type"]) <= {
            "explicit", "implicit", "misinformed", "interest_based", "demographics"}
    assert summary["steps"] == 2
    assert set(summary["step_time_s"]) == {"generate", "score", "update"}
    assert summary["rollout_tokens_per_s"] > 0 and summary["wall_time_s"] > 0
    assert 0.05 < summary["peak_memory"]["cpu_rss_gb"] < 64  # a Python process with torch, in GiB
    means = summary["train_metrics_mean"]
    for name in ("reward", "reward_std", "rewards/format/mean", "rewards/ndcg/mean", "rewards/qas/mean",
                 "rewards/pas/mean", "frac_reward_zero_std", "completions/mean_length", "clip_ratio/low_mean",
                 "clip_ratio/high_mean", "kl", "entropy", "policy_loss", "rollout_tokens_per_s",
                 "time/generate_s", "time/score_s", "time/update_s", "raae/penalized_segment_frac",
                 "rewards/ndcg/std", "memory/peak_cpu_rss_gb"):
        assert name in means, name
    assert isinstance(summary["curriculum"], list) and summary["curriculum"]
    assert summary["warm_start"]["knowledge_final_loss"] is not None  # tiny.yaml's knowledge lines are used
    config = (run / "config.yaml").read_text()
    assert "rerec.rl.module.ReRecPolicy" in config and "RAAEAdvantage" in config
    assert (run / "metrics.csv").exists() and (run / "val_before.md").exists() and (run / "val_after.json").exists()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"curriculum/active", "curriculum/mean_difficulty"} <= set(header)  # logged by the curriculum callback
    assert (run / "completions.jsonl").exists()
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn at the end of the fit
    assert (run / "model-final" / "config.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))


def test_sampled_evaluation_leaves_training_unchanged(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    """The fixture's fit scores sampled answers before RL; the same fit without them trains identically."""
    tmp, run = fitted
    main(["fit", *_args(tmp, "--trainer.max_steps=2", f"--trainer.callbacks={CALLBACKS}",
                        "--model.init_args.eval_samples=0", f"--trainer.default_root_dir={tmp_path}",
                        f"--trainer.logger.init_args.save_dir={tmp_path}")])
    plain = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    sampled = json.loads((run / "summary.json").read_text())
    assert "sampled" not in plain["val_before"] and "sampled" in sampled["val_before"]

    def training(summary: dict) -> dict:
        return {k: v for k, v in summary["train_metrics_mean"].items()
                if not k.startswith("time/") and "per_s" not in k}

    assert training(plain) == training(sampled)
    assert plain["val_after"]["accuracy_by_type"] == sampled["val_after"]["accuracy_by_type"]


def test_test_and_predict_from_the_checkpoint(fitted: tuple[Path, Path]) -> None:
    tmp, run = fitted
    ckpt = run / "checkpoints" / "last.ckpt"
    main(["test", *_args(tmp), f"--ckpt_path={ckpt}"])
    main(["predict", *_args(tmp), f"--ckpt_path={ckpt}"])
    later = sorted((tmp / "runs" / "rerec").glob("version_*"))
    test_run, predict_run = later[-2], later[-1]
    table = json.loads((test_run / "test_metrics.json").read_text())
    assert table["overall"]["count"] == 6
    rows = [json.loads(line) for line in (predict_run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert set(rows[0]) >= {"query_id", "type", "completion", "parsed_titles", "matched_item_ids", "match_kinds"}


def test_console_script_exits_0_after_a_fit(tmp_path: Path) -> None:
    """The installed ``rerec`` entry point exits with what ``main`` returns: 0 after a fit, not 1 with
    the CLI object printed."""
    import shutil
    import subprocess
    import sys

    script = shutil.which("rerec", path=str(Path(sys.executable).parent))
    assert script, "the rerec console script is not installed beside this Python"
    out = subprocess.run([script, "fit", *_args(tmp_path, "--trainer.max_steps=1", "--model.init_args.eval_samples=0")],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ReRecCLI object" not in out.stdout + out.stderr
    assert next((tmp_path / "runs" / "rerec").glob("version_*/summary.json")).is_file()
