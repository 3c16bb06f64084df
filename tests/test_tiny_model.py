"""The offline tokenizer and tiny Qwen2 (``rerec.rl.tiny_model``): template, padding, round trips, init."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from rerec.rl.tiny_model import TinyModelConfig, build_tiny_model, build_tokenizer

CORPUS = [
    "You are a recommendation assistant. Reason step by step, one fact per line.",
    "Silent River, The (1987): director Ann Lee; genre Drama.",
    "Needs: director Ann Lee; genre Drama. I have watched: Golden Harbor (1990).",
    "Amélie (2001) is set in Paris; 東京物語 (1953) is set in 東京.",
    "The answer is \\boxed{Silent River, The (1987)}",
] * 3
SMALL = TinyModelConfig(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, max_position_embeddings=128
)
STRINGS = [
    "Silent River, The (1987): director Ann Lee; genre Drama.",
    "Amélie (2001) — “Crème brûlée” naïve café, Ærø, 東京, emoji 🎬 and Ω≈ç√",
    "  leading spaces,\ttabs\nand\r\nnew lines  \n\n",
    "unseen words: zyxwvut qqq 12345 ¿¡",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "\\boxed{Painted Mirror, The (1987)}",
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return build_tokenizer(CORPUS, vocab_size=400)


def test_special_tokens_and_padding_side(tokenizer: PreTrainedTokenizerBase) -> None:
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert ids == [0, 1, 2]  # special tokens come first, in SPECIAL_TOKENS order
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 2)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.bos_token is None
    assert len(tokenizer) <= 400
    # the special tokens are single, unsplittable tokens inside text
    assert tokenizer("a<|im_end|>b")["input_ids"].count(2) == 1
    batch = tokenizer(["Drama", "Silent River, The (1987)"], padding=True)
    short = batch["input_ids"][0]
    assert short[0] == tokenizer.pad_token_id and batch["attention_mask"][0][0] == 0  # left padding
    assert batch["attention_mask"][1] == [1] * len(short)


def test_chat_template_is_chatml_with_generation_prompt(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which film?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhich film?<|im_end|>\n<|im_start|>assistant\n"
    )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert text.endswith("<|im_start|>user\nWhich film?<|im_end|>\n")
    # tokenized, the turn markers are the special ids
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text)["input_ids"]
    assert ids.count(1) == 3 and ids.count(2) == 2 and ids[0] == 1


@pytest.mark.parametrize("text", STRINGS)
def test_decode_encode_is_lossless(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    assert tokenizer.decode(ids) == text
    # character offsets cover the text (RAAE maps segments to tokens with them)
    enc = tokenizer(text, return_offsets_mapping=True)
    assert enc["offset_mapping"][-1][1] == len(text)


def test_save_and_reload_gives_identical_tokenization(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    alone, together = tmp_path / "tokenizer", tmp_path / "model"
    tokenizer.save_pretrained(alone)
    # next to a qwen2 config.json, transformers 5 rebuilds the tokenizer as a Qwen2Tokenizer
    build_tiny_model(SMALL, tokenizer).save_pretrained(together)
    tokenizer.save_pretrained(together)
    messages = [{"role": "user", "content": STRINGS[1]}]
    for folder in (alone, together):
        loaded = AutoTokenizer.from_pretrained(folder)
        for text in STRINGS:
            assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"], (folder.name, text)
            assert loaded.decode(tokenizer(text)["input_ids"]) == text
        assert (loaded.pad_token_id, loaded.eos_token_id, loaded.padding_side) == (0, 2, "left")
        assert loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
        assert len(loaded) == len(tokenizer)


def test_model_shapes_config_and_reload(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    model = build_tiny_model(SMALL, tokenizer)
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers) == (len(tokenizer), 32, 1)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (2, 1, 64)
    assert cfg.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (2, 0)
    ids = torch.tensor([tokenizer("Silent River, The (1987)")["input_ids"]] * 3)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.logits.shape == (3, ids.shape[1], len(tokenizer))
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_init_is_deterministic_per_seed_and_leaves_global_rng(tokenizer: PreTrainedTokenizerBase) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_tiny_model(SMALL, tokenizer)
    assert torch.equal(torch.rand(1), expected_next)  # the global RNG is untouched
    b = build_tiny_model(SMALL, tokenizer)
    c = build_tiny_model(TinyModelConfig(**{**SMALL.__dict__, "seed": 1}), tokenizer)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
