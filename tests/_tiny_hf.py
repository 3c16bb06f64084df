"""Offline test fixtures: a tiny random Qwen2 causal LM and a tiny byte-level BPE tokenizer.

Nothing here downloads. ``save_tiny_pretrained`` writes a folder that ``AutoModelForCausalLM`` and
``AutoTokenizer`` load like a hub checkpoint, so the loading code paths are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIAL_TOKENS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
CORPUS = [
    "system user assistant: you are a helpful recommender.",
    "Which film should I watch next? The answer is \\boxed{Cast Away (2000)}.",
    "It stars the same lead; same director, genre drama, comedy, action or thriller.",
    "A man stranded on an island in the ocean; love, war, space, city by night and day (1994).",
]
# Same pre-tokenisation as transformers' Qwen2Tokenizer: with ``model_type: qwen2`` in config.json,
# transformers 5 reloads *any* saved tokenizer as a Qwen2Tokenizer rebuilt from vocab + merges, so the
# tiny tokenizer uses this exact byte-level BPE pipeline so that AutoTokenizer round-trips it unchanged.
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Minimal ChatML-style template; enough for apply_chat_template with a generation prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(*, with_pad: bool = True, with_chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE fast tokenizer trained on a few sentences (special tokens get ids 0-4).

    Args:
        with_pad: register ``<pad>`` as the pad token (otherwise the tokenizer has none).
        with_chat_template: attach a ChatML-style chat template.
    """
    backend = Tokenizer(BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>" if with_pad else None,
        additional_special_tokens=["<|im_start|>"],
    )
    if with_chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_qwen2(vocab_size: int, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 with ``hidden_size`` width and ``layers`` decoder layers (fp32).

    Args:
        vocab_size: embedding rows; the tokenizer's ``len()``.
        seed: torch seed for the initialisation.
        hidden_size: model width (multiple of 64 keeps the 4-bit CPU kernels on their fast path).
        layers: number of decoder layers.
    """
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=3,
        pad_token_id=4,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    # Random init with std 0.02 gives near-uniform outputs; a larger scale makes logits informative
    # enough that adapter changes show up clearly in log-prob comparisons.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.1)
    return model.eval()


def save_tiny_pretrained(
    folder: Path, *, with_pad: bool = True, with_chat_template: bool = True, seed: int = 0
) -> Path:
    """Write a tiny Qwen2 + tokenizer to ``folder`` (created) and return it.

    Args:
        folder: destination; becomes a local "hub" folder for ``from_pretrained``.
        with_pad: see :func:`tiny_tokenizer`.
        with_chat_template: see :func:`tiny_tokenizer`.
        seed: model initialisation seed.
    """
    tok = tiny_tokenizer(with_pad=with_pad, with_chat_template=with_chat_template)
    model = tiny_qwen2(len(tok), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
