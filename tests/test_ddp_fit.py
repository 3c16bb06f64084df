"""Data-parallel RL through Lightning: ``python -m rerec fit`` with ``strategy: ddp`` on 2 CPU processes
(gloo) on the small world, through an epoch boundary of the curriculum and a validation.

Checks what DDP must guarantee here: each rank generates for its own prompts (disjoint in every step,
so a group of G never straddles ranks), the ranks end with identical weights that did move (gradients
averaged), identical curriculum state, the same reduced metrics, and one run folder with one summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _cli_args import fit_args

ROOT = Path(__file__).resolve().parents[1]
PROBE = json.dumps([{"class_path": "_ddp_probe.RankProbe"}])
LENGTH_REWARD = json.dumps({"class_path": "_user_plugins.AnswerLengthPenalty", "init_args": {"per_char": 0.05}})
STEPS = 4  # 8 training queries, 2 ranks × 2 prompts: 2 steps an epoch, so one curriculum boundary


def test_ddp_fit_on_two_cpu_processes(tmp_path: Path) -> None:
    args = fit_args(
        tmp_path, "--config", "configs/tiny-ddp.yaml", f"--trainer.max_steps={STEPS}",
        "--data.init_args.batch_size=2", "--data.init_args.max_train_queries=8",
        "--model.init_args.eval_samples=0", f"--trainer.callbacks+={PROBE}",
        # rewards that differ inside a group, so every step has a gradient to average
        f"--model.init_args.reward_funcs+={LENGTH_REWARD}",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "rerec", "fit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    runs = list((tmp_path / "runs" / "rerec").glob("version_*"))
    assert len(runs) == 1, runs  # one run folder, written by rank 0
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    assert summary["peak_memory"]["cpu_rss_gb"] > 0
    assert (runs[0] / "val_metrics.json").exists()  # validation at the epoch boundary, gathered over ranks

    rank0, rank1 = (json.loads((tmp_path / "runs" / f"probe-rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2 and len(rank0["batches"]) == len(rank1["batches"]) == STEPS
    for b0, b1 in zip(rank0["batches"], rank1["batches"]):
        assert len(b0) == len(b1) == 2 and not set(b0) & set(b1)  # each rank its own prompts
    # An epoch's steps of both ranks cover the 8 queries once.
    assert len({q for step in rank0["batches"][:2] + rank1["batches"][:2] for q in step}) == 8
    assert rank0["weights"] == rank1["weights"] and rank0["weights"] != rank0["weights_start"]
    assert rank0["curriculum"] == rank1["curriculum"] and rank0["curriculum"]["epoch"] >= 1
    for m0, m1 in zip(rank0["metrics"], rank1["metrics"]):
        for key in ("reward", "completions/mean_length", "rollout_tokens_per_s"):
            assert m0[key] == m1[key], key  # reduced over ranks before logging


def test_ddp_fit_with_dynamic_sampling(tmp_path: Path) -> None:
    """Half the groups vary: ranks buffer different numbers of informative groups between updates, yet
    update at the same steps on as many rows (a mismatch would hang the gradient all-reduce), end with
    identical weights that moved and an identical curriculum that saw every generated batch."""
    some = json.dumps({"class_path": "_user_plugins.SomeQueriesLength", "init_args": {"per_char": 0.05}})
    args = fit_args(
        tmp_path, "--config", "configs/tiny-ddp.yaml", "--trainer.max_steps=2",
        "--data.init_args.batch_size=2", "--data.init_args.max_train_queries=8",
        "--model.init_args.eval_samples=0", f"--trainer.callbacks+={PROBE}",
        f"--model.init_args.reward_funcs+={some}", "--model.init_args.dynamic_sampling.enabled=true",
        "--model.init_args.dynamic_sampling.max_num_gen_batches=3",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "rerec", "fit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(next((tmp_path / "runs" / "rerec").glob("version_*/summary.json")).read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2 and summary["optimizer_steps"] == 2
    assert "train/dynamic_sampling/groups_kept" in summary["train_metrics_mean"]
    rank0, rank1 = (json.loads((tmp_path / "runs" / f"probe-rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0["batches"]) == len(rank1["batches"]) >= 2
    assert rank0["weights"] == rank1["weights"] and rank0["weights"] != rank0["weights_start"]
    assert rank0["curriculum"] == rank1["curriculum"]
