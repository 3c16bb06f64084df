"""CLI fits for the core contracts: the defaults train, the update does not depend on the micro-batch
split, and a user's own rollout engine and reward component plug in by ``class_path``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _cli_args import SMALL_WORLD, fit_args
from rerec.cli import main
from rerec.rl.loss import PolicyLossConfig
from rerec.rl.module import ReRecPolicy
from rerec.rl.policy_loading import ModelConfig

LAST_ONLY = json.dumps([{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                         "init_args": {"save_last": True, "save_top_k": 0}}])


def test_a_model_section_with_only_the_model_name_trains(tmp_path: Path) -> None:
    """``model: {name_or_path: tiny}`` and every other model setting at its default (full fine-tuning,
    reference auto, KL beta 0.01): one RL step runs (it used to fail with 'no adapters to disable')."""
    config = tmp_path / "defaults.yaml"
    config.write_text(
        "model:\n  class_path: rerec.rl.module.ReRecPolicy\n  init_args:\n    model:\n      name_or_path: tiny\n"
        "data:\n  class_path: rerec.data.datamodule.RecDataModule\n"
    )
    cli = main(["fit", "--config", str(config), *SMALL_WORLD, f"--data.init_args.world_dir={tmp_path / 'world'}",
                "--data.init_args.max_eval_queries=4", "--data.init_args.batch_size=2",
                "--trainer.max_steps=1", "--trainer.accelerator=cpu", "--trainer.logger=false",
                "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
                "--trainer.reload_dataloaders_every_n_epochs=1", f"--trainer.default_root_dir={tmp_path / 'runs'}"])
    model = cli.model
    assert model.model_config.mode == "full" and model.loss_config.beta == 0.01
    assert model.model_config.reference == "copy"  # auto, made concrete: full fine-tuning with a KL term
    assert model.stats.rl_steps == 1 and model.summary["train_metrics_mean"]["kl"] >= 0.0


def test_impossible_reference_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="model.reference is 'none'.*loss.beta"):
        ReRecPolicy(model=ModelConfig("tiny", mode="full", reference="none"))
    # without a KL term nothing reads the reference: auto keeps no copy in full mode
    plain = ReRecPolicy(model=ModelConfig("tiny", mode="full"), loss=PolicyLossConfig(beta=0.0))
    assert plain.model_config.reference == "none"


def test_dr_grpo_normaliser_defaults_to_the_rollout_budget_on_a_copy() -> None:
    shared = PolicyLossConfig(loss_type="dr_grpo", beta=0.0)
    model = ReRecPolicy(loss=shared)
    assert model.loss_config.max_completion_length == model.generation.max_completion_length
    assert shared.max_completion_length is None  # the caller's (possibly shared default) object is untouched


# Rewards that differ inside every group (the ragged engine's completions differ in length), so the
# update has a real signal: with all-equal rewards the gradient is float noise that Adam amplifies.
LENGTH_REWARD = json.dumps([{"class_path": "_user_plugins.AnswerLengthPenalty", "init_args": {"per_char": 0.1}}])


def _final_weights(tmp: Path, *extra: str) -> dict[str, torch.Tensor]:
    main(["fit", *fit_args(tmp, "--trainer.max_steps=2", f"--trainer.callbacks={LAST_ONLY}",
                           "--model.init_args.engine=_user_plugins.RaggedEngine",
                           f"--model.init_args.reward_funcs={LENGTH_REWARD}",
                           "--model.init_args.optim.lr=0.01", "--model.init_args.eval_samples=0", *extra)])
    ckpt = next((tmp / "runs").rglob("last.ckpt"))
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_fits_that_differ_only_in_micro_batch_size_end_with_the_same_weights(tmp_path: Path) -> None:
    """B=2 prompts × G=2 with completions of 1, 3, 5 and 1 tokens: micro-batches of one group or of the
    whole batch give the same update. Adam moves a weight by about lr (0.01) per step whatever the
    gradient's size, so float summation noise on near-zero gradients shows up to ~1e-5; the old
    row-share weighting of micro-batch token means moved weights by ~lr differently."""
    whole = _final_weights(tmp_path / "whole", "--model.init_args.micro_batch_size=4")
    split = _final_weights(tmp_path / "split", "--model.init_args.micro_batch_size=2")
    assert whole.keys() == split.keys()
    worst = max(float((whole[k] - split[k]).abs().max()) for k in whole)
    assert worst < 1e-4, worst


def test_user_engine_and_reward_component_by_class_path(tmp_path: Path) -> None:
    funcs = json.dumps([
        {"class_path": "rerec.rl.reward_components.NDCGReward"},
        {"class_path": "_user_plugins.AnswerLengthPenalty", "init_args": {"weight": 0.5, "per_char": 0.01}},
    ])
    cli = main(["fit", *fit_args(tmp_path, "--trainer.max_steps=2", "--trainer.enable_checkpointing=false",
                                 "--trainer.callbacks=[]", "--model.init_args.engine=_user_plugins.CountingEngine",
                                 f"--model.init_args.reward_funcs={funcs}", "--model.init_args.eval_samples=0")])
    engine, summary = cli.model.engine, cli.model.summary
    assert type(engine).__name__ == "CountingEngine" and engine.syncs == summary["optimizer_steps"] == 2
    rollouts = [c for c in engine.generate_calls if not c[2]]
    greedy = [c for c in engine.generate_calls if c[2]]
    assert [rows for _, rows, _ in rollouts] == [4, 4]  # B=2 prompts × G=2 per training step
    assert sum(prompts for prompts, _, _ in greedy) == 2 * summary["val_before"]["count"]  # before and after RL
    means = summary["train_metrics_mean"]
    assert means["rewards/answer_length/mean"] < 0 and "rewards/qas/mean" not in means
    assert "rewards/answer_length/std" in means


def test_the_open_task_in_the_benchmarks_answer_format_trains_on_sep_lists(tmp_path: Path) -> None:
    """``prompt.answer_format: sep`` asks for ``[SEP]``-separated titles; the reward reads them that way."""
    cli = main(["fit", *fit_args(tmp_path, "--trainer.max_steps=1", "--trainer.enable_checkpointing=false",
                                 "--trainer.callbacks=[]", "--data.init_args.task=open",
                                 "--data.init_args.prompt.answer_format=sep", "--model.init_args.eval_samples=0",
                                 "--model.init_args.warm_start.steps=0", "--model.init_args.warm_start.copy_steps=0")])
    model = cli.model
    assert model.reward.answer_format == "sep" and model.data.titles_per_answer == model.data.prompt.open_k
    task = model.data.tasks["val"][0]
    title = model.data.items[task.answer_ids[0]].title
    read = model.reward.read([f"Some reasoning.\n{title} [SEP] Nothing Like It"], [task])
    assert read.parsed == [[title, "Nothing Like It"]] and read.predicted_ids[0][0] == task.answer_ids[0]
