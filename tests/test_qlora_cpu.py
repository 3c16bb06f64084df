"""The QLoRA path on CPU: 4-bit NF4 base (double quantisation) + LoRA all-linear + gradient checkpointing.

Covers the bitsandbytes AVX512-BF16 trap (DESIGN §4): an eval-mode generate must not break the training
step that follows — gradients must be exactly those of a model that never ran an eval forward.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _tiny_hf import save_tiny_pretrained, tiny_qwen2, tiny_tokenizer
from rerec.rl.checkpointing import drop_frozen_policy_state
from rerec.rl.policy_loading import (
    LoraConfigSpec,
    ModelConfig,
    disable_cpu_weight_repacking,
    export_adapter,
    is_4bit,
    load_policy,
    prepare_policy,
    reference_policy,
)

bnb = pytest.importorskip("bitsandbytes")

TEXTS = ["Which film should I watch next? \\boxed{Cast Away (2000)}", "A man stranded on an island."]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pretrained(tmp_path_factory.mktemp("tiny4") / "model")


def _qlora_cfg(path: str) -> ModelConfig:
    return ModelConfig(path, mode="qlora", lora=LoraConfigSpec(r=8, alpha=16, dropout=0.0))


def _linear4bit(model) -> list:
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _dequantized(layer) -> torch.Tensor:
    return bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()


def _lora_params(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


def _train_grads(model, batch) -> dict[str, torch.Tensor]:
    """One training-mode forward/backward; returns the LoRA gradients and clears them."""
    model.train()
    loss = model(**batch, labels=batch["input_ids"], use_cache=False).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in _lora_params(model).items()}
    model.zero_grad(set_to_none=True)
    return grads


def _token_logprobs(model, batch) -> torch.Tensor:
    """Log-prob of each next token (padding zeroed), eval mode, no grad."""
    model.eval()
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits.float()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return lp * mask[:, 1:]


def test_qlora_generate_then_train(tiny_dir: Path) -> None:
    torch.manual_seed(0)
    model, tok = load_policy(_qlora_cfg(str(tiny_dir)))

    # 4-bit NF4 with double quantisation on every linear layer of the decoder; repacking disabled.
    layers = _linear4bit(model)
    assert len(layers) == 2 * 7
    assert all(m.weight.quant_state.quant_type == "nf4" and m.weight.quant_state.nested for m in layers)
    assert all(m.support_avx512bf16_for_cpu is False for m in layers if hasattr(m, "support_avx512bf16_for_cpu"))
    assert model.base_model.model.model.layers[0].gradient_checkpointing
    lora = _lora_params(model)
    assert len(lora) == 2 * 7 * 2 and all(p.requires_grad for p in lora.values())
    frozen = {n: p for n, p in model.named_parameters() if "lora_" not in n}
    assert not any(p.requires_grad for p in frozen.values())
    frozen_before = {n: p.detach().clone() for n, p in frozen.items()}
    packed_before = [m.weight.data.clone() for m in layers]

    batch = tok(TEXTS, padding=True, return_tensors="pt")
    # Gradients of a model that has never run an eval forward: the yardstick for after generate.
    g_fresh = _train_grads(model, batch)

    # Eval-mode work first: reference and policy log-probs, then sampling.
    with reference_policy(model) as ref:
        ref_before = _token_logprobs(ref, batch)
    torch.testing.assert_close(_token_logprobs(model, batch), ref_before)  # LoRA B starts at zero
    chats = [[{"role": "user", "content": t}] for t in TEXTS]
    prompts = tok.apply_chat_template(
        chats, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
    )
    model.eval()
    out = model.generate(**prompts, max_new_tokens=4, do_sample=True, top_p=1.0)
    assert out.shape == (2, prompts["input_ids"].shape[1] + 4)
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)

    # Training after generate: same gradients as before generate. B got gradients; A gets exactly zero
    # on the first step because B = 0 (dL/dA = B^T dL/dh x^T).
    g = _train_grads(model, batch)
    torch.testing.assert_close(g, g_fresh)
    assert all(g[n].abs().sum() > 0 for n in g if "lora_B" in n)
    assert all(torch.count_nonzero(g[n]) == 0 for n in g if "lora_A" in n)

    opt = torch.optim.AdamW(list(lora.values()), lr=5e-2, weight_decay=0.0)
    before_step = {n: p.detach().clone() for n, p in lora.items()}
    model.train()
    model(**batch, labels=batch["input_ids"], use_cache=False).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert all(not torch.equal(lora[n], before_step[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(lora[n], before_step[n]) for n in lora if "lora_A" in n)

    # Second step: now B != 0, so every A and B receives a gradient and changes.
    model(**batch, labels=batch["input_ids"], use_cache=False).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())
    before_step = {n: p.detach().clone() for n, p in lora.items()}
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert all(not torch.equal(lora[n], before_step[n]) for n in lora)

    # The 4-bit base and every other frozen weight are untouched.
    assert all(torch.equal(m.weight.data, w) for m, w in zip(layers, packed_before))
    assert all(torch.equal(p, frozen_before[n]) for n, p in frozen.items())
    assert all(p.grad is None for p in frozen.values())

    # Reference = adapters off = the initial policy; the adapted policy has moved away from it.
    with reference_policy(model) as ref:
        ref_after = _token_logprobs(ref, batch)
    torch.testing.assert_close(ref_after, ref_before, rtol=0, atol=0)
    assert (_token_logprobs(model, batch) - ref_after).abs().max() > 1e-2


def test_qlora_in_memory_model_is_quantised_and_adapter_round_trips(tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer()
    base = tiny_qwen2(len(tok), seed=1)
    base.config._name_or_path = "tiny-in-memory"
    base.save_pretrained(tmp_path / "same-weights")  # to rebuild the identical 4-bit base below
    model = prepare_policy(base, tok, _qlora_cfg("tiny-in-memory"))
    assert is_4bit(model) and len(_linear4bit(model)) == 14
    # Not the deleted temporary folder:
    assert model.config._name_or_path == model.peft_config["default"].base_model_name_or_path == "tiny-in-memory"

    batch = tok(TEXTS, padding=True, return_tensors="pt")
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model(**batch, labels=batch["input_ids"], use_cache=False).loss.backward()
    opt.step()
    out = export_adapter(model, tmp_path / "adapter", tok)

    cfg = _qlora_cfg(str(tmp_path / "same-weights"))
    fresh = AutoModelForCausalLM.from_pretrained(
        cfg.name_or_path, quantization_config=cfg.quant.to_bnb(), device_map={"": "cpu"}
    )
    disable_cpu_weight_repacking(fresh)
    reloaded = PeftModel.from_pretrained(fresh, out, is_trainable=True)
    expected = _token_logprobs(model, batch)
    torch.testing.assert_close(_token_logprobs(reloaded, batch), expected)

    # Checkpoint state without the 4-bit base (whose bitsandbytes entries load_state_dict rejects).
    state = drop_frozen_policy_state(model.state_dict(), model, prefix="")
    assert len(state) == 2 * 14 and all(".lora_" in k for k in state)
    with torch.no_grad():
        for p in _lora_params(reloaded).values():
            p.zero_()
    assert (_token_logprobs(reloaded, batch) - expected).abs().max() > 1e-3
    result = reloaded.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if ".lora_" in k]
    torch.testing.assert_close(_token_logprobs(reloaded, batch), expected)


@pytest.mark.skipif(not bnb.functional.has_avx512bf16(), reason="the repacking only happens on AVX512-BF16 CPUs")
def test_already_repacked_weights_are_converted_back(tiny_dir: Path) -> None:
    model, tok = load_policy(_qlora_cfg(str(tiny_dir)))
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    g_fresh = _train_grads(model, batch)
    layers = _linear4bit(model)
    weights = [_dequantized(m) for m in layers]
    for m in layers:  # re-arm the trap, then spring it with an eval forward
        m.support_avx512bf16_for_cpu = True
    _token_logprobs(model, batch)
    if not all(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers):
        pytest.skip("this bitsandbytes no longer repacks 4-bit weights on an eval forward")

    assert disable_cpu_weight_repacking(model) == len(layers)
    assert not any(m.weight.quant_state.packing_format_for_cpu for m in layers)
    assert all(m.weight.quant_state.nested for m in layers)  # double quantisation restored
    # Not bit-identical: the repacking rounded the block scales to bfloat16 (measured ~0.1-0.25%).
    for m, w in zip(layers, weights):
        assert (_dequantized(m) - w).norm() <= 0.01 * w.norm()
    g = _train_grads(model, batch)
    for name in g_fresh:  # gradients flow again; bf16 compute amplifies the small weight change
        assert (g[name] - g_fresh[name]).norm() <= 0.1 * g_fresh[name].norm(), name
