"""The recipes' precisions in a real fit (the CLI, Lightning's strategy and precision plugin):

* trainable weights and AdamW's states stay float32 under ``bf16-true`` (Lightning casts the whole module
  to bf16 before the optimizer is built; a bf16 LoRA-A of |a| ~ 0.1 has a spacing of 5e-4, so an Adam
  step of ~lr = 2e-5 rounds to no change at all);
* an engine that runs its own model (vLLM) is set up and called outside Lightning's default-device,
  default-dtype and autocast contexts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import _precision_probe as probe
from _cli_args import fit_args

pytest.importorskip("bitsandbytes")

# Completions of different lengths get different rewards: gradients are not zero (the tiny world's own
# rewards are often equal across a group before any warm start worth the name).
LENGTH_REWARD = '--model.init_args.reward_funcs=[{"class_path": "_user_plugins.AnswerLengthPenalty", "init_args": {"per_char": 0.1}}]'
QLORA = [LENGTH_REWARD, "--model.init_args.model.mode=qlora", "--model.init_args.model.reference=auto",
         "--model.init_args.model.lora.dropout=0.0", "--model.init_args.eval_samples=0",
         "--model.init_args.graph.inline_lightgcn_epochs=0",
         "--model.init_args.model.gradient_checkpointing=true"]  # the recipe's layout: prompts packed per group


def _fit(tmp_path: Path, precision: str, *extra: str) -> None:
    from rerec.cli import main

    probe.SEEN.clear()
    main(["fit", *fit_args(tmp_path, f"--trainer.precision={precision}", "--trainer.max_steps=2", *extra)])


@pytest.mark.parametrize("precision", ["bf16-true", "bf16-mixed"])
def test_qlora_adapter_and_adam_states_stay_float32_and_move_at_the_recipe_lr(tmp_path: Path, precision: str) -> None:
    _fit(tmp_path, precision, *QLORA, "--model.init_args.optim.lr=2e-5", "--model.init_args.optim.warmup_steps=0",
         "--model.init_args.max_grad_norm=0", "--trainer.callbacks+=_precision_probe.LoraStepRecorder",
         "--trainer.callbacks+=_precision_probe.LayoutRecorder")
    assert probe.SEEN["logprobs"] == (2, True)  # G = 2 rows per prompt forward, packed (checkpointing)
    assert probe.SEEN["trainable_dtypes"] == {"torch.float32"}
    assert probe.SEEN["adam_state_dtypes"] == {"torch.float32"}
    assert probe.SEEN["lora_a_moved"] > 0.99  # bf16 weights: ~0 (the update rounds away)


@pytest.mark.parametrize("precision", ["bf16-true", "bf16-mixed"])
def test_an_engine_with_its_own_model_runs_outside_lightnings_contexts(tmp_path: Path, precision: str) -> None:
    _fit(tmp_path, precision, *QLORA, "--model.init_args.engine=_precision_probe.ContextRecordingEngine",
         "--trainer.max_steps=1")
    neutral = {"dtype": "torch.float32", "device": None, "autocast": False}
    assert probe.SEEN["setup"] == [neutral]
    # the held-out evaluations before and after RL and the rollouts of the step
    assert len(probe.SEEN["generate"]) >= 3
    assert all(seen == neutral for seen in probe.SEEN["generate"]), probe.SEEN["generate"]
    assert probe.SEEN["sleep"] == [neutral]  # once per step, before the update (evaluations keep it awake)


def test_importance_weights_carry_no_lora_dropout_noise(tmp_path: Path) -> None:
    """LoRA dropout 0.5 and an engine whose log-probs are the trainer's own (dropout off): the weights
    must be 1. The on-policy old log-probs come from the training forward, dropout on; taken as the
    weights' numerator they carried its noise (step 2, once LoRA-B is not zero)."""
    import csv

    _fit(tmp_path, "32-true", LENGTH_REWARD, "--model.init_args.model.mode=lora", "--model.init_args.model.reference=auto",
         "--model.init_args.model.lora.dropout=0.5", "--model.init_args.optim.lr=0.05", "--model.init_args.eval_samples=0",
         "--model.init_args.engine=_precision_probe.TrainerLogProbsEngine")
    rows = [r for r in csv.DictReader(next((tmp_path / "runs").rglob("metrics.csv")).open()) if r.get("is_ratio/max")]
    assert len(rows) == 2
    for row in rows:
        assert abs(float(row["is_ratio/max"]) - 1) < 1e-4 and abs(float(row["is_ratio/mean"]) - 1) < 1e-5, row
