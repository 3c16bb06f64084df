"""Reliability drills through the real CLI (docs/reliability.md): kill -9 then resume, SIGTERM then resume,
a diverging update, and checkpoints that cannot be resumed from.

The runs are small (4 RL steps of 2 prompts × 2 rollouts; 4 training queries, so an epoch boundary falls
after step 2) and score answers by length as well, so that rewards differ inside every group and the
update has a real signal: a resumed run that drew other random numbers would end with other weights."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _cli_args import fit_args
from rerec.cli import main

REPO = Path(__file__).resolve().parents[1]
FUNCS = json.dumps([
    {"class_path": "rerec.rl.reward_components.FormatReward", "init_args": {"weight": 0.1}},
    {"class_path": "rerec.rl.reward_components.NDCGReward"},
    {"class_path": "_user_plugins.AnswerLengthPenalty", "init_args": {"per_char": 0.01}},
])
EVERY_STEP = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
              "init_args": {"every_n_train_steps": 1, "save_last": True, "save_top_k": -1}}


def run_args(shared: Path, runs: Path, *extra: str, callbacks: tuple[dict, ...] = ()) -> list[str]:
    """A small fit of configs/tiny.yaml; ``shared`` holds the world and warm-start caches, ``runs`` the
    run folders."""
    return fit_args(
        shared, "--trainer.max_steps=4", "--data.init_args.max_train_queries=4",
        "--model.init_args.eval_samples=0", "--model.init_args.log_completions_every_n_steps=1",
        "--model.init_args.optim.lr=0.01", f"--model.init_args.reward_funcs={FUNCS}",
        f"--trainer.callbacks={json.dumps([EVERY_STEP, *callbacks])}",
        f"--trainer.default_root_dir={runs}", f"--trainer.logger.init_args.save_dir={runs}", *extra,
    )


def run_subprocess(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "rerec", "fit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def signal_at(step: int, name: str) -> dict:
    return {"class_path": "_user_plugins.SignalAt", "init_args": {"step": step, "signal": name}}


def step_metrics(run: Path) -> dict[int, dict[str, float]]:
    """Training rows of ``metrics.csv`` by step, without timings."""
    rows = {}
    with open(run / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("reward"):
                rows[int(row["step"])] = {k: float(v) for k, v in row.items()
                                          if v and not k.startswith(("time/", "memory/")) and "per_s" not in k}
    return rows


def completions(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def training_means(run: Path) -> dict[str, float]:
    means = json.loads((run / "summary.json").read_text())["train_metrics_mean"]
    return {k: v for k, v in means.items() if not k.startswith(("time/", "memory/")) and "per_s" not in k}


def assert_continues(reference: Path, resumed: Path, first_step: int) -> None:
    """The resumed run's steps, completions, final weights and whole-run means are the reference's."""
    ref_rows, rows = step_metrics(reference), step_metrics(resumed)
    assert sorted(rows) == [s for s in sorted(ref_rows) if s >= first_step - 1]  # metrics.csv counts from 0
    for step, row in rows.items():
        assert row == pytest.approx(ref_rows[step], rel=1e-5, abs=1e-7), step
    assert completions(resumed) == [c for c in completions(reference) if c["step"] >= first_step]
    ref_w, w = weights(reference), weights(resumed)
    assert max(float((ref_w[k] - w[k]).abs().max()) for k in ref_w) < 1e-6
    assert training_means(resumed) == pytest.approx(training_means(reference), rel=1e-5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The uninterrupted run: ``(shared cache folder, run folder)``."""
    shared = tmp_path_factory.mktemp("shared")
    main(["fit", *run_args(shared, shared / "reference")])
    return shared, next((shared / "reference" / "rerec").glob("version_*"))


def test_kill_9_then_resume_repeats_the_uninterrupted_run(reference: tuple[Path, Path], tmp_path: Path) -> None:
    """SIGKILL when step 3 starts, right after the epoch boundary; the resume from the step-2 checkpoint
    draws the same rollouts and ends with the same metrics and weights."""
    shared, ref_run = reference
    killed = run_subprocess(run_args(shared, tmp_path, callbacks=(signal_at(3, "SIGKILL"),)))
    assert killed.returncode == -9, killed.stderr[-2000:]
    first = tmp_path / "rerec" / "version_0"
    assert not (first / "summary.json").exists()
    assert not list(first.glob("checkpoints/.*"))  # no temporary file left behind
    main(["fit", *run_args(shared, tmp_path, f"--ckpt_path={first / 'checkpoints' / 'last.ckpt'}")])
    resumed = tmp_path / "rerec" / "version_1"
    assert_continues(ref_run, resumed, first_step=3)
    summary = json.loads((resumed / "summary.json").read_text())
    segments = summary["segments"]
    assert [(s["first_step"], s["last_step"], s["status"]) for s in segments] == [(1, 2, "continued"), (3, 4, "completed")]
    assert segments[0]["run_dir"] == str(first) and summary["steps"] == 4
    assert summary["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in segments), rel=1e-3)


def test_sigterm_checkpoints_exits_nonzero_and_resumes(reference: tuple[Path, Path], tmp_path: Path) -> None:
    """SIGTERM when step 3 starts: step 3 finishes, ``last.ckpt`` holds it, ``summary.json`` says
    ``interrupted``, the exit status is 143; the resume runs step 4 as the uninterrupted run did."""
    shared, ref_run = reference
    stopped = run_subprocess(run_args(shared, tmp_path, callbacks=(signal_at(3, "SIGTERM"),)))
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    first = tmp_path / "rerec" / "version_0"
    summary = json.loads((first / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM" and summary["steps"] == 3
    assert summary["checkpoint"] == str(first / "checkpoints" / "last.ckpt") and "val_after" not in summary
    assert "continue with --ckpt_path" in stopped.stderr
    main(["fit", *run_args(shared, tmp_path, f"--ckpt_path={summary['checkpoint']}")])
    assert_continues(ref_run, tmp_path / "rerec" / "version_1", first_step=4)


def _finite_checkpoints(run: Path) -> list[str]:
    names = []
    for path in sorted(run.glob("checkpoints/*.ckpt")):
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path.name
        names.append(path.name)
    return names


def test_a_non_finite_log_prob_skips_the_step_and_never_reaches_a_checkpoint(
    reference: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every training log-prob of RL step 2 is NaN (the old code turned every weight NaN): that optimizer
    step is skipped and counted, the run goes on, every checkpoint is finite."""
    shared, _ = reference
    main(["fit", *run_args(shared, tmp_path, "--model.init_args.engine=_user_plugins.PoisonedLogProbs")])
    run = tmp_path / "rerec" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["skipped_steps"] == 1
    assert summary["skipped"] == [{"step": 2, "mini_batch": 0, "non_finite": "loss=nan, grad_norm=nan"}]
    assert summary["steps"] == 5 and summary["optimizer_steps"] == 4  # max_steps counts applied updates
    assert summary["train_metrics_left_out"]["loss"] == 1 and math.isfinite(summary["train_metrics_mean"]["loss"])
    assert step_metrics(run)[1]["train/skipped_steps"] == 1.0
    assert "RL step 2, mini-batch 0: non-finite loss=nan, grad_norm=nan; optimizer step skipped" in caplog.text
    assert len(_finite_checkpoints(run)) == 5  # steps 1-4 and last


def test_consecutive_non_finite_steps_stop_the_run_with_a_clear_error(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    shared, _ = reference
    poisoned = json.dumps({"class_path": "_user_plugins.PoisonedLogProbs", "init_args": {"steps": [2, 3, 4, 5]}})
    with pytest.raises(RuntimeError, match="2 optimizer steps in a row were skipped for non-finite values"):
        main(["fit", *run_args(shared, tmp_path, f"--model.init_args.engine={poisoned}",
                               "--model.init_args.max_consecutive_skips=2")])
    run = tmp_path / "rerec" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "NonFiniteTrainingError" in summary["error"]
    assert summary["skipped_steps"] == 2 and summary["optimizer_steps"] == 1
    assert _finite_checkpoints(run) == ["epoch=0-step=1.ckpt", "last.ckpt"]


@pytest.mark.parametrize(("content", "fault"), [(b"", "the file is empty"), (None, "truncated or corrupt")])
def test_an_unusable_checkpoint_is_one_clear_error_before_any_run_folder(
    reference: tuple[Path, Path], tmp_path: Path, content: bytes | None, fault: str
) -> None:
    shared, ref_run = reference
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content if content is not None else (ref_run / "checkpoints" / "last.ckpt").read_bytes()[:50_000])
    with pytest.raises(SystemExit, match=f"error: checkpoint {bad}: {fault}"):
        main(["fit", *run_args(shared, tmp_path / "runs", f"--ckpt_path={bad}")])
    assert not (tmp_path / "runs").exists()
