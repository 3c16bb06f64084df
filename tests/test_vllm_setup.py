"""What the vLLM engine asks of vLLM, tested without vLLM: which ``quantization`` (never one the installed
vLLM lacks: vLLM 0.28+ has no bitsandbytes), the plain checkpoint it writes for a 4-bit base (its
dequantized NF4 values, so vLLM samples from the weights the trainer scores), one sampling seed per
prompt, sleep only when the policy module says so, and the held-out evaluation in one call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from _tiny_hf import tiny_qwen2, tiny_tokenizer
from rerec.rl import vllm_engine
from rerec.rl.rollout import GenerationConfig
from rerec.rl.policy_loading import LoraConfigSpec, ModelConfig, QuantConfigSpec, is_4bit, prepare_policy
from rerec.rl.vllm_engine import VLLMEngine, _save_dequantized

pytest.importorskip("bitsandbytes")

# vllm 0.32.0's QUANTIZATION_METHODS (no "bitsandbytes" since 0.28); 0.27 still had it
VLLM_032 = ["awq", "fp8", "gptq", "compressed-tensors", "torchao", "online", "fp8_per_tensor", "fp8_per_channel",
            "int8_per_channel_weight_only", "mxfp8"]
VLLM_027 = [*VLLM_032, "bitsandbytes"]


def qlora_policy(compute_dtype: str = "float32") -> tuple[torch.nn.Module, object]:
    """A tiny 4-bit QLoRA policy built in-process (head_dim 32, as vLLM's CPU attention needs) with a
    random, non-zero adapter."""
    tok = tiny_tokenizer()
    cfg = ModelConfig("tiny", mode="qlora", gradient_checkpointing=False, quant=QuantConfigSpec(compute_dtype=compute_dtype),
                      lora=LoraConfigSpec(r=8, alpha=16, dropout=0.0))
    policy = prepare_policy(tiny_qwen2(len(tok), seed=3, hidden_size=128, layers=2), tok, cfg)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return policy.eval(), tok


@pytest.fixture(scope="module")
def qlora():
    return qlora_policy()


def test_auto_quantization_never_asks_for_a_method_the_installed_vllm_lacks(qlora, monkeypatch) -> None:
    base = qlora[0].get_base_model()
    assert is_4bit(base)
    full = tiny_qwen2(64)
    monkeypatch.setattr(vllm_engine, "vllm_quantization_methods", lambda: VLLM_032)
    assert VLLMEngine()._quantization(base) is None  # was "bitsandbytes": "Unknown quantization method"
    assert VLLMEngine()._quantization(full) is None
    assert VLLMEngine(quantization="fp8_per_channel")._quantization(base) == "fp8_per_channel"
    with pytest.raises(ValueError, match=r"'bitsandbytes' is not in this vLLM's methods .*set quantization: auto or none"):
        VLLMEngine(quantization="bitsandbytes")._quantization(base)
    monkeypatch.setattr(vllm_engine, "vllm_quantization_methods", lambda: VLLM_027)
    assert VLLMEngine()._quantization(base) == "bitsandbytes"
    assert VLLMEngine(quantization="none")._quantization(base) is None


def test_a_4bit_base_is_saved_as_a_plain_checkpoint_of_its_nf4_values(qlora, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    policy, tok = qlora
    base = policy.get_base_model()
    _save_dequantized(base, tmp_path / "base")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    assert not is_4bit(plain) and getattr(plain.config, "quantization_config", None) is None
    assert not any("lora" in n for n, _ in plain.named_parameters())
    ids = torch.tensor([tok.encode("A man stranded on an island in the ocean")])
    with torch.no_grad(), policy.disable_adapter():
        expected = policy(input_ids=ids).logits
    with torch.no_grad():
        got = plain(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        adapted = policy(input_ids=ids).logits
    assert (adapted - expected).abs().max() > 1e-3  # the adapter is not in the saved base


# ---------------------------------------------------------------------------------------------------
# generate / sleep against a stand-in for vLLM's LLM (records what it is asked)


class _FakeLLM:
    """Answers every request with n completions of two tokens; counts sleeps and wake-ups."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, object]] = []
        self.sleeps = self.wakes = 0

    def generate(self, prompts, params, lora_request=None, use_tqdm=False):
        self.calls.append((len(prompts), params))
        per_prompt = params if isinstance(params, list) else [params] * len(prompts)
        step = {7: SimpleNamespace(logprob=-0.5)}
        return [SimpleNamespace(outputs=[SimpleNamespace(index=i, token_ids=[7, 7], logprobs=[step, step],
                                                         finish_reason="stop") for i in range(p.n)])
                for p in per_prompt]

    def sleep(self, level: int) -> None:
        self.sleeps += 1

    def wake_up(self) -> None:
        self.wakes += 1


@pytest.fixture
def fake_vllm(monkeypatch):
    """``vllm.SamplingParams`` and ``vllm.inputs.TokensPrompt`` as plain records (no vLLM needed)."""
    vllm = ModuleType("vllm")
    vllm.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    inputs = ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)


def _fake_engine(**kwargs) -> VLLMEngine:
    tok = tiny_tokenizer()
    engine = VLLMEngine(**kwargs)
    engine.policy, engine.tokenizer, engine.llm, engine.is_lora = tiny_qwen2(len(tok)), tok, _FakeLLM(), False
    return engine


CONFIG = GenerationConfig(num_generations=3, max_completion_length=4)


def test_every_prompt_of_a_call_gets_its_own_seeds_drawn_from_torch(fake_vllm) -> None:
    engine = _fake_engine()
    torch.manual_seed(5)
    engine.generate([[5, 6], [5, 6], [9]], CONFIG)
    _, params = engine.llm.calls[-1]
    assert isinstance(params, list) and len(params) == 3  # one SamplingParams for all prompts made
    seeds = [p.seed for p in params]                       # child i of every prompt share its noise
    children = {s + i for s in seeds for i in range(CONFIG.num_generations)}  # vLLM: child i gets seed + i
    assert len(children) == 3 * CONFIG.num_generations
    torch.manual_seed(5)
    engine.generate([[5, 6], [5, 6], [9]], CONFIG)
    assert [p.seed for p in engine.llm.calls[-1][1]] == seeds  # reproducible from torch's seed
    unseeded = _fake_engine(per_prompt_seeds=False)
    unseeded.generate([[5, 6]], CONFIG)
    assert not hasattr(unseeded.llm.calls[-1][1], "seed")


def test_vllm_sleeps_only_when_told_not_after_every_generate(fake_vllm) -> None:
    engine = _fake_engine(enable_sleep_mode=True)
    engine._stale = False
    for _ in range(3):  # e.g. three evaluation batches
        engine.generate([[5, 6]], CONFIG, greedy=True)
    assert (engine.llm.sleeps, engine.llm.wakes) == (0, 0)  # was a sleep/wake cycle per call
    engine.sleep()
    engine.sleep()
    assert engine.llm.sleeps == 1
    engine.generate([[5, 6]], CONFIG)
    assert engine.llm.wakes == 1
    awake = _fake_engine(enable_sleep_mode=False)
    awake.sleep()
    assert awake.llm.sleeps == 0


def test_held_out_evaluation_gives_vllm_all_its_queries_in_one_call(fake_vllm) -> None:
    from rerec.rl.evaluation import Evaluator

    engine = _fake_engine()
    engine._stale = False
    tasks = [SimpleNamespace(query_id=f"q{i}", query_type="explicit", answer_ids=(1,), candidate_ids=(1, 2),
                             query=SimpleNamespace(conditions=())) for i in range(64)]
    reward = SimpleNamespace(read=lambda texts, rows: SimpleNamespace(
        parsed=[None] * len(texts), predicted_ids=[[]] * len(texts), match_kinds=[[]] * len(texts),
        as_asked=[False] * len(texts)))
    evaluator = Evaluator(engine, reward, {t.query_id: [5, 6] for t in tasks}, CONFIG, None, 32, 1, {}, 0,
                          device=lambda: torch.device("cpu"))
    records = evaluator.records(tasks)
    assert len(records) == 64 and [n for n, _ in engine.llm.calls] == [64]  # was two calls of 32
