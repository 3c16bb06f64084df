"""What the vLLM engine decides before vLLM starts, tested without vLLM: which ``quantization`` it asks
for (never one the installed vLLM lacks: vLLM 0.28+ has no bitsandbytes) and the plain checkpoint it
writes for a 4-bit base (its dequantized NF4 values, so vLLM samples from the weights the trainer scores).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _tiny_hf import tiny_qwen2, tiny_tokenizer
from rerec.rl import vllm_engine
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
