"""A tiny Qwen2 policy and its tokenizer, built offline from the synthetic world's text.

The tokenizer is a byte-level BPE trained in seconds on the world's titles, names, queries and prompt
phrases (lossless decoding, character offsets, any Unicode), wrapped as a ``PreTrainedTokenizerFast``
with a ChatML chat template — the same interface as a real instruct model's tokenizer, so every code path
(chat template, left padding, offsets for RAAE) is the real one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen2's own pre-tokenisation. transformers reloads any saved folder whose config says ``qwen2`` as a
# Qwen2Tokenizer rebuilt from vocab + merges with this pipeline, so using it here keeps
# ``AutoTokenizer.from_pretrained(saved_dir)`` identical to the tokenizer the policy was trained with.
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


@dataclass
class TinyModelConfig:
    """Architecture of the tiny offline policy (a Qwen2 decoder) and its tokenizer.

    Args:
        vocab_size: Target BPE vocabulary size (special tokens included); the trainer may stop earlier.
        hidden_size: Model width.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        intermediate_size: MLP width.
        max_position_embeddings: Longest sequence (prompt + completion) the model accepts.
        entity_tokens: Make every catalog title and knowledge-graph value (people, studios) one token.
        seed: Seed of the weight initialisation.
    """

    vocab_size: int = 1536
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 1024
    entity_tokens: bool = True
    seed: int = 0


def build_tokenizer(
    corpus: Iterable[str], vocab_size: int = 1536, entities: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus`` and wrap it with a ChatML template (pad = ``<|endoftext|>``).

    ``entities`` (catalog titles, people, studios) become whole tokens, matched before BPE: a tiny model
    then copies an item with one token instead of learning to copy a multi-token span, which is what
    lets it learn the candidate task in minutes on a CPU. Decoding and character offsets are unchanged.
    """
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
        padding_side="left",
        model_max_length=4096,
    )
    wrapped.chat_template = CHATML_TEMPLATE
    names = sorted(set(entities))
    if names:
        # With the leading space, "director Ann Lee Silent River (1975)" is [..., " Ann Lee", " Silent
        # River (1975)"]: no separator token between a fact and the title that follows it.
        wrapped.add_tokens([AddedToken(" " + name, normalized=False, single_word=False) for name in names])
    return wrapped


def tiny_qwen2_config(config: TinyModelConfig, vocab_size: int, eos_token_id: int | None = None,
                      pad_token_id: int | None = None) -> Qwen2Config:
    """The Qwen2 architecture of ``config`` for a vocabulary of ``vocab_size`` (tied embeddings, no BOS)."""
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        use_cache=True,
    )


def init_tiny_model(config: TinyModelConfig, hf_config: Qwen2Config) -> Qwen2ForCausalLM:
    """A Qwen2 with weights drawn from ``config.seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Qwen2ForCausalLM(hf_config)


def build_tiny_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 sized by ``config`` for ``tokenizer`` (tied embeddings, float32)."""
    hf_config = tiny_qwen2_config(config, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    model = init_tiny_model(config, hf_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model
