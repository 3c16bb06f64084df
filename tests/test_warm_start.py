"""Warm start: the copy phase learns to copy, trace SFT lowers the loss, results are cached by key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rerec.rl.warm_start import WarmStartConfig, _copy_loss, cache_key, run_warm_start, vocab_fingerprint


def _model(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg)


# (prompt ids, completion ids): the completion repeats the prompt's last two tokens, then "EOS" (63).
EXAMPLES = [([5 + i, 6 + i, 7 + i, 8 + (i % 7)], [7 + i, 8 + (i % 7), 63]) for i in range(40)]


def test_copy_phase_learns_to_copy() -> None:
    torch.manual_seed(0)
    model = _model()
    cfg = WarmStartConfig(steps=1, copy_steps=150, copy_length=6, copy_batch_size=32, lr=3e-3, cache_dir=None)
    gen = torch.Generator().manual_seed(123)
    before = float(_copy_loss(model, cfg, (3, 60), gen, 64))
    stats = run_warm_start(model, EXAMPLES, cfg, pad_id=0, copy_vocab=(3, 60))
    after = float(_copy_loss(model, cfg, (3, 60), torch.Generator().manual_seed(123), 64))
    assert before > 3.5  # ≈ log(57): chance
    assert after < 1.0 and stats["copy_final_loss"] < 1.0
    assert stats["copy_steps"] == 150 and stats["cached"] is False


def test_trace_sft_with_copy_mix_lowers_the_loss_and_caches(tmp_path: Path) -> None:
    cfg = WarmStartConfig(steps=60, copy_mix=True, copy_length=6, copy_batch_size=16, lr=3e-3,
                          batch_size=8, cache_dir=str(tmp_path))
    model = _model()
    key = cache_key("test", cfg)
    stats = run_warm_start(model, EXAMPLES, cfg, pad_id=0, key=key, copy_vocab=(3, 60))
    assert stats["final_loss"] < 3.0 and not stats["cached"]  # chance is log(64) ≈ 4.16
    assert (tmp_path / f"{key}.pt").exists()
    fresh = _model(seed=1)
    again = run_warm_start(fresh, EXAMPLES, cfg, pad_id=0, key=key, copy_vocab=(3, 60))
    assert again["cached"] is True and again["final_loss"] == stats["final_loss"]
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_copy_needs_a_vocabulary_and_null_cache_dir_strings_mean_none() -> None:
    with pytest.raises(ValueError, match="copy_vocab"):
        run_warm_start(_model(), EXAMPLES, WarmStartConfig(steps=1, copy_mix=True, cache_dir=None), pad_id=0)
    assert WarmStartConfig(cache_dir="None").cache_dir is None
    assert cache_key("a", {"x": 1}) == cache_key("a", {"x": 1}) != cache_key("a", {"x": 2})


class _Vocab:
    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def test_vocab_fingerprint_changes_with_any_token_id() -> None:
    # The tiny tokenizer is trained on the task prompts: a data cap that changes them changes the ids, and
    # cached warm-start weights must then not be reused (they were once, silently: held-out accuracy 0.0).
    base = {"a": 0, "b": 1, "c": 2}
    assert vocab_fingerprint(_Vocab(base)) == vocab_fingerprint(_Vocab(dict(reversed(list(base.items())))))
    assert vocab_fingerprint(_Vocab(base)) != vocab_fingerprint(_Vocab({"a": 0, "b": 2, "c": 1}))
    assert vocab_fingerprint(_Vocab(base)) != vocab_fingerprint(_Vocab({**base, "d": 3}))
