"""Each GRPO knob of docs/grpo-knobs.md through the real CLI: a fit of 2 optimizer steps on the small world (wiring and
logged metrics, not learning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _cli_args import fit_args

OVERLONG_REWARD = json.dumps([
    {"class_path": "rerec.rl.reward_components.FormatReward", "init_args": {"weight": 0.1}},
    {"class_path": "rerec.rl.reward_components.NDCGReward"},
    {"class_path": "rerec.rl.overlong.OverlongPenalty", "init_args": {"overlong_buffer_len": 4}},
])
from rerec.cli import main

KNOBS = {
    "gspo": (["--model.init_args.num_iterations=2", "--model.init_args.loss.importance_sampling_level=sequence",
              "--model.init_args.loss.loss_type=seq_mean"], ["ratio/mean"]),
    "gdpo": (["--model.init_args.multi_objective_aggregation=normalize_then_sum",
              "--model.init_args.advantage.init_args.scale_rewards=batch"], ["raae/penalized_token_frac"]),
    "entropy": (["--model.init_args.loss.entropy_coef=0.01", "--model.init_args.loss.top_entropy_quantile=0.2"],
                ["top_entropy/kept_frac", "entropy"]),
    "overlong": (["--model.init_args.loss.mask_truncated_completions=true",
                  f"--model.init_args.reward_funcs={OVERLONG_REWARD}"], ["rewards/overlong/mean"]),
    # the HF engine reports no sampling log-probs: a test engine reports shifted ones (ratio e^1 > cap 2)
    "is_mode": (["--model.init_args.engine=_user_plugins.MismatchedEngine",
                 "--model.init_args.loss.importance_sampling_mode=sequence_mask"],
                ["is_ratio/masked_frac", "is_ratio/mean"]),
    "dynamic_sampling": (["--model.init_args.dynamic_sampling.enabled=true",
                          "--model.init_args.dynamic_sampling.max_num_gen_batches=3"],
                         ["train/dynamic_sampling/gen_batches", "train/dynamic_sampling/groups_kept"]),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """World and warm-start cache shared by the fits (each fit has its own run folder)."""
    return tmp_path_factory.mktemp("knobs")


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_fit_with_knob(knob: str, shared: Path, tmp_path: Path) -> None:
    args, logged = KNOBS[knob]
    main(["fit", *fit_args(shared, "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path}",
                           f"--trainer.logger.init_args.save_dir={tmp_path}", *args)])
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    assert summary["status"] == "completed" and summary["optimizer_steps"] == 2
    for name in logged:
        assert name in summary["train_metrics_mean"], name
    config = next(tmp_path.rglob("config.yaml")).read_text()
    for arg in args:  # the resolved config holds each knob with its value
        key, value = arg.split("=", 1)
        if not value.startswith("[") and "engine" not in key:
            assert f"{key.rsplit('.', 1)[1]}: {value}" in config, arg
    if knob == "is_mode":  # every completion starts with a shifted token: its product ratio is >= e > 2
        assert summary["train_metrics_mean"]["is_ratio/masked_frac"] == 1.0
    if knob == "dynamic_sampling":  # updates counted as steps; every generation batch reached the curriculum
        means = summary["train_metrics_mean"]
        assert summary["steps"] == 2 and 1 <= means["train/dynamic_sampling/gen_batches"] <= 3
        header = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()[0].split(",")
        assert "curriculum/active" in header
    if knob == "overlong":
        assert "rerec.rl.overlong.OverlongPenalty" in config
