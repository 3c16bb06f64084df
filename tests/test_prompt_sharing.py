"""Sharing a prompt's forward between its G rollouts must not change anything but the cost."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rerec.rl.logprobs import completion_logprobs, grouped_completion_logprobs
from rerec.rl.rollout import GenerationConfig, generate
from rerec.rl.tiny_model import TinyModelConfig, build_tiny_model, build_tokenizer

B, G, P, T = 3, 4, 10, 6


@pytest.fixture(scope="module")
def model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(5, 300, (B, P), generator=g)
    pmask = torch.ones(B, P, dtype=torch.long)
    prompt[0, :3], pmask[0, :3] = 0, 0  # left padding of different widths
    prompt[1, :1], pmask[1, :1] = 0, 0
    comp = torch.randint(5, 300, (B * G, T), generator=g)
    cmask = torch.ones(B * G, T, dtype=torch.long)
    comp[0, 4:], cmask[0, 4:] = 0, 0  # right padding after an early EOS
    comp[5, 2:], cmask[5, 2:] = 0, 0
    ids = torch.cat([prompt.repeat_interleave(G, 0), comp], 1)
    mask = torch.cat([pmask.repeat_interleave(G, 0), cmask], 1)
    return ids, mask, cmask


def test_grouped_logprobs_and_gradients_equal_the_plain_path(model: Qwen2ForCausalLM) -> None:
    ids, mask, cmask = _batch()
    plain, plain_ent = completion_logprobs(model, ids, mask, P, temperature=0.7, with_entropy=True)
    (plain * cmask).sum().backward()
    plain_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    grouped, grouped_ent = grouped_completion_logprobs(model, ids, mask, P, G, temperature=0.7, with_entropy=True)
    (grouped * cmask).sum().backward()
    valid = cmask.bool()
    torch.testing.assert_close(grouped[valid], plain[valid], atol=2e-6, rtol=0)
    torch.testing.assert_close(grouped_ent[valid], plain_ent[valid], atol=2e-5, rtol=0)
    for p, g in zip(model.parameters(), plain_grads):
        torch.testing.assert_close(p.grad, g, atol=5e-5, rtol=1e-4)
    model.zero_grad()


def test_grouped_logprobs_reject_rows_that_do_not_share_a_prompt(model: Qwen2ForCausalLM) -> None:
    ids, mask, _ = _batch()
    ids[1, P - 1] = (ids[1, P - 1] + 1) % 300
    with pytest.raises(ValueError, match="share their prompt"):
        grouped_completion_logprobs(model, ids, mask, P, G)
    with pytest.raises(ValueError, match="groups of"):
        grouped_completion_logprobs(model, ids[:-1], mask[:-1], P, G)


def test_shared_prefill_samples_exactly_the_same_tokens() -> None:
    tok = build_tokenizer(["hello world this is a film about a river", "the quick brown fox (1990)"] * 20, 300)
    model = build_tiny_model(TinyModelConfig(hidden_size=64, num_layers=2), tok)
    prompts = [tok("hello world").input_ids, tok("the quick brown fox film about").input_ids, tok("river").input_ids]
    runs = []
    for share in (False, True):
        cfg = GenerationConfig(num_generations=4, max_completion_length=12, share_prompt_prefill=share)
        torch.manual_seed(0)
        runs.append(generate(model, tok, prompts, cfg))
    plain, shared = runs
    assert torch.equal(plain.input_ids, shared.input_ids)
    assert torch.equal(plain.attention_mask, shared.attention_mask)
    assert torch.equal(plain.completion_mask, shared.completion_mask)
    assert plain.texts == shared.texts


def test_chunked_lm_head_gives_the_same_logprobs_and_gradients(model: Qwen2ForCausalLM) -> None:
    """Chunks of 4 columns (the last one short), logits rebuilt in the backward: same values, same gradient."""
    ids, mask, cmask = _batch()
    whole, whole_ent = grouped_completion_logprobs(model, ids, mask, P, G, temperature=0.7, with_entropy=True)
    (whole * cmask).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    chunked, chunked_ent = grouped_completion_logprobs(model, ids, mask, P, G, temperature=0.7, with_entropy=True,
                                                       logits_chunk=4)
    (chunked * cmask).sum().backward()
    valid = cmask.bool()
    torch.testing.assert_close(chunked[valid], whole[valid], atol=2e-6, rtol=0)
    torch.testing.assert_close(chunked_ent[valid], whole_ent[valid], atol=2e-5, rtol=0)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, atol=5e-5, rtol=1e-4)
    model.zero_grad()
