"""A real, tiny byte-level BPE fast tokenizer built offline in milliseconds (RAAE / token-span tests)."""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CORPUS = (
    "Needs: director Ann Lee; genre Drama.",
    "Silent River (1987): director Ann Lee; genre Drama. Match.",
    "Title Z (1990): director Bo Chen; genre Comedy.",
    "Se7en (1995) and Face/Off (1997) are thrillers; What's Up, Doc? (1972) is a comedy.",
    "Star Wars: Episode IV (1977) was directed by George Lucas.",
    "Amélie (2001) is set in Paris; 東京物語 (1953) is set in 東京.",
    "The answer is \\boxed{Silent River (1987)}",
)


@functools.lru_cache(maxsize=None)
def tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on :data:`CORPUS` with ChatML special tokens (eos ``<|im_end|>``,
    pad ``<|endoftext|>``), wrapped as ``PreTrainedTokenizerFast``. Cached: build once per session."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )


def tiny_sentencepiece_like() -> PreTrainedTokenizerFast:
    """A non-byte-level tokenizer (WordLevel + Metaspace, SentencePiece style) to exercise the
    incremental-decoding path of the span mapper."""
    words = ["▁Needs:", "▁director", "▁Ann", "▁Lee;", "▁Amélie", "▁東京", "▁(1987)", "\n", "<unk>"]
    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<unk>")
