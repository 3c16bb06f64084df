"""Batched rollouts (``rerec.rl.rollout``): padding layout, completion masks, grouping, determinism."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedTokenizerBase, Qwen2ForCausalLM

from rerec.rl.rollout import GenerationConfig, completion_mask_from_ids, generate, left_pad
from rerec.rl.tiny_model import TinyModelConfig, build_tiny_model, build_tokenizer

CORPUS = [
    "Silent River, The (1987): director Ann Lee; genre Drama.",
    "Needs: director Ann Lee; genre Drama. Candidates: Golden Harbor (1990).",
    "The answer is \\boxed{Silent River, The (1987)}",
] * 3
PAD, EOS = 0, 2  # build_tokenizer: <|endoftext|> pads, <|im_end|> ends


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    tok = build_tokenizer(CORPUS, vocab_size=300)
    assert (tok.pad_token_id, tok.eos_token_id) == (PAD, EOS)
    return tok


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerBase) -> Qwen2ForCausalLM:
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                          max_position_embeddings=128, seed=0)
    return build_tiny_model(cfg, tokenizer).eval()


@pytest.fixture(scope="module")
def prompts(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    texts = ["Needs: director Ann Lee; genre Drama.", "Golden Harbor", "The answer is"]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    assert len({len(p) for p in ids}) == 3  # different lengths, so padding happens
    return ids


def test_left_pad() -> None:
    ids, mask = left_pad([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long
    ids, _ = left_pad([[1], [2, 3]], pad_id=9)
    assert ids.tolist() == [[9, 1], [2, 3]]


def test_completion_mask_from_ids() -> None:
    ids = torch.tensor(
        [
            [7, 8, EOS, PAD, PAD],  # ends at 2: True up to and including the EOS
            [EOS, 7, EOS, 8, 9],  # the FIRST EOS counts
            [7, 8, 9, 10, 11],  # no EOS: all True, truncated
            [7, 8, 9, 10, EOS],  # EOS on the last position: not truncated
        ]
    )
    mask, truncated = completion_mask_from_ids(ids, EOS)
    assert mask.tolist() == [
        [True, True, True, False, False],
        [True, False, False, False, False],
        [True, True, True, True, True],
        [True, True, True, True, True],
    ]
    assert truncated.tolist() == [False, False, True, False]
    assert mask.dtype == truncated.dtype == torch.bool
    # several EOS ids (e.g. <|im_end|> and <|endoftext|>): the first of any of them ends the row
    mask, truncated = completion_mask_from_ids(torch.tensor([[7, 5, 8, EOS], [7, 8, 9, 10]]), [EOS, 5])
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert truncated.tolist() == [False, True]


def _eos_bias(model: Qwen2ForCausalLM, bias: float) -> torch.utils.hooks.RemovableHandle:
    """Make <|im_end|> likely so that rows end at different lengths (a random model rarely stops)."""

    def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[..., EOS] += bias
        return output

    return model.lm_head.register_forward_hook(hook)


def test_generate_layout_and_grouping(model: Qwen2ForCausalLM, tokenizer, prompts) -> None:
    g, t_max = 4, 8
    cfg = GenerationConfig(num_generations=g, temperature=1.0, max_completion_length=t_max)
    torch.manual_seed(0)
    handle = _eos_bias(model, 4.0)
    try:
        out = generate(model, tokenizer, prompts, cfg)
    finally:
        handle.remove()
    n, p = len(prompts) * g, max(len(x) for x in prompts)
    assert out.prompt_length == p
    t = out.completion_ids.shape[1]
    assert 1 <= t <= t_max
    assert out.input_ids.shape == out.attention_mask.shape == (n, p + t)
    assert out.completion_mask.shape == (n, t) and out.truncated.shape == (n,) and len(out.texts) == n
    for row in range(n):
        prompt = prompts[row // g]  # rows b*G .. b*G+G-1 belong to prompt b
        pad = p - len(prompt)
        assert out.input_ids[row, :pad].tolist() == [PAD] * pad
        assert out.input_ids[row, pad:p].tolist() == prompt
        assert out.attention_mask[row, :p].tolist() == [0] * pad + [1] * len(prompt)
        comp, m = out.completion_ids[row], out.completion_mask[row]
        assert torch.equal(out.input_ids[row, p:], comp)
        assert torch.equal(out.attention_mask[row, p:], m.long())
        length = int(m.sum())
        assert m.tolist() == [True] * length + [False] * (t - length)  # a prefix
        assert comp[length:].tolist() == [PAD] * (t - length)  # pad after the end
        if out.truncated[row]:
            assert length == t == t_max and EOS not in comp.tolist()
        else:
            assert comp[length - 1] == EOS and EOS not in comp[: length - 1].tolist()
        assert out.texts[row] == tokenizer.decode(comp[:length], skip_special_tokens=True)
    assert out.num_completion_tokens == int(out.completion_mask.sum())
    assert not out.truncated.all(), "the EOS bias should end some rows"
    assert (out.completion_mask.sum(1) < t).any(), "some row should end before the longest one"


def test_greedy_is_deterministic_and_one_per_prompt(model: Qwen2ForCausalLM, tokenizer, prompts) -> None:
    cfg = GenerationConfig(num_generations=5, max_completion_length=5)
    a = generate(model, tokenizer, prompts, cfg, greedy=True)
    b = generate(model, tokenizer, prompts, cfg, greedy=True)
    assert a.input_ids.shape[0] == len(prompts)  # greedy defaults to one completion per prompt
    assert torch.equal(a.input_ids, b.input_ids) and a.texts == b.texts
    # an explicit G under greedy repeats the same completion G times
    c = generate(model, tokenizer, prompts, cfg, num_generations=2, greedy=True)
    assert torch.equal(c.completion_ids[0::2], c.completion_ids[1::2])
    assert torch.equal(c.completion_ids[0::2, : a.completion_ids.shape[1]], a.completion_ids)


def test_left_padding_does_not_change_greedy_completions(model: Qwen2ForCausalLM, tokenizer, prompts) -> None:
    cfg = GenerationConfig(max_completion_length=6)
    batch = generate(model, tokenizer, prompts, cfg, greedy=True)
    for row, prompt in enumerate(prompts):
        alone = generate(model, tokenizer, [prompt], cfg, greedy=True)
        length = int(alone.completion_mask.sum())
        assert batch.completion_ids[row, :length].tolist() == alone.completion_ids[0, :length].tolist()


@pytest.mark.parametrize("training", [True, False])
def test_training_mode_is_restored(model: Qwen2ForCausalLM, tokenizer, prompts, training: bool) -> None:
    model.train(training)
    try:
        generate(model, tokenizer, prompts[:1], GenerationConfig(num_generations=2, max_completion_length=2))
        assert model.training is training
        assert all(m.training is training for m in model.modules())
    finally:
        model.eval()
