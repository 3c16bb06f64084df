"""What both trainers of ``vs_trl.py`` read: one saved Qwen2 model with its tokenizer, and the rendered
prompt texts. Built once per configuration so the two trainers load byte-identical files.

The prompts are RecBench+-shaped: a user's viewing history and ``num_candidates`` numbered candidate
films (title, year, genres), asking for one. Titles come from a MovieLens ``movies.dat`` when one is
given (realistic token lengths), else from a small built-in list. The tokenizer is a byte-level BPE
trained offline on those texts with Qwen2's pre-tokenisation; the model's vocabulary can be larger than
the tokenizer's (``vocab_size: 151936`` gives Qwen2.5's LM-head and logits cost with unused rows).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ModelSpec", "PromptSpec", "build_model_dir", "load_titles", "real_model_dir", "real_prompts",
           "render_prompts"]

FALLBACK_TITLES = [
    ("Toy Story (1995)", "Animation|Children's|Comedy"), ("Heat (1995)", "Action|Crime|Thriller"),
    ("Casino (1995)", "Drama|Thriller"), ("Sense and Sensibility (1995)", "Drama|Romance"),
    ("Four Rooms (1995)", "Thriller"), ("Get Shorty (1995)", "Action|Comedy|Drama"),
    ("Copycat (1995)", "Crime|Drama|Thriller"), ("Money Train (1995)", "Action"),
    ("Assassins (1995)", "Thriller"), ("Powder (1995)", "Drama|Sci-Fi"),
    ("Leaving Las Vegas (1995)", "Drama|Romance"), ("Othello (1995)", "Drama"),
    ("Now and Then (1995)", "Drama"), ("Persuasion (1995)", "Romance"),
    ("Babe (1995)", "Children's|Comedy|Drama"), ("Carrington (1995)", "Drama|Romance"),
    ("Dead Man Walking (1995)", "Drama"), ("Across the Sea of Time (1995)", "Documentary"),
    ("It Takes Two (1995)", "Comedy"), ("Clueless (1995)", "Comedy|Romance"),
    ("Richard III (1995)", "Drama|War"), ("Dead Presidents (1995)", "Action|Crime|Drama"),
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class ModelSpec:
    """A random-initialised Qwen2 (what is timed is the shapes, not what the model knows)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int | None = None  # None: the tokenizer's size; 151936 = Qwen2.5's
    tokenizer_vocab: int = 4096


@dataclass(frozen=True)
class PromptSpec:
    """How many prompts and how long: candidates and history films per prompt."""

    num_prompts: int = 8
    num_candidates: int = 5
    history: int = 3
    seed: int = 0


def load_titles(movies: str | Path | None) -> list[tuple[str, str]]:
    """``(title, genres)`` of every film of a MovieLens ``movies.dat`` (``id::title::genres``, latin-1),
    or the built-in list when ``movies`` is ``None`` or missing."""
    if movies is None or not Path(movies).exists():
        return list(FALLBACK_TITLES)
    out = []
    for line in Path(movies).read_text(encoding="latin-1").splitlines():
        parts = line.split("::")
        if len(parts) == 3:
            out.append((parts[1], parts[2]))
    return out


def render_prompts(titles: list[tuple[str, str]], spec: PromptSpec) -> list[str]:
    """RecBench+-shaped candidate prompts as plain text (no chat template: both trainers take the same
    string and tokenise it the same way)."""
    rng = random.Random(spec.seed)
    prompts = []
    for _ in range(spec.num_prompts):
        films = rng.sample(titles, spec.history + spec.num_candidates)
        seen, candidates = films[: spec.history], films[spec.history:]
        lines = ["You are a movie recommender. The user recently watched and liked:"]
        lines += [f"- {t} [{g.replace('|', ', ')}]" for t, g in seen]
        lines.append("Which one of these candidate films should the user watch next?")
        lines += [f"{i + 1}. {t} [{g.replace('|', ', ')}]" for i, (t, g) in enumerate(candidates)]
        lines.append("Think step by step about the user's taste, then answer with \\boxed{title}.")
        prompts.append("\n".join(lines) + "\n")
    return prompts


def _tokenizer(texts: list[str], vocab: int):
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None, additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHAT_TEMPLATE  # ReRec's loader requires one; both trainers get plain-text prompts
    return tok


def build_model_dir(out: Path, model: ModelSpec, titles: list[tuple[str, str]], min_new_tokens: int) -> Path:
    """Save a random Qwen2 and its tokenizer to ``out`` (reused when its spec is unchanged).

    ``min_new_tokens`` goes into the saved generation config: EOS cannot be sampled before it, so both
    trainers generate completions of exactly that many tokens.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    meta = {"model": asdict(model), "min_new_tokens": min_new_tokens, "titles": len(titles), "format": 2}
    stamp = out / "bench-spec.json"
    if stamp.exists() and json.loads(stamp.read_text()) == meta:
        return out
    out.mkdir(parents=True, exist_ok=True)
    corpus = [f"{t} [{g.replace('|', ', ')}]" for t, g in titles] + render_prompts(titles, PromptSpec(64, 5, 3))
    tok = _tokenizer(corpus, model.tokenizer_vocab)
    vocab = model.vocab_size or len(tok)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=model.hidden_size, intermediate_size=model.intermediate_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_heads,
        num_key_value_heads=model.num_kv_heads, max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    net = Qwen2ForCausalLM(config)
    net.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, min_new_tokens=min_new_tokens)
    net.save_pretrained(out)
    tok.save_pretrained(out)
    stamp.write_text(json.dumps(meta))
    return out


def real_model_dir(source: str | Path, out: Path, min_new_tokens: int) -> Path:
    """A pretrained model folder (e.g. the imported SmolLM2-135M-Instruct) seen through ``out``: its files
    linked, its generation config rewritten with ``min_new_tokens`` (both trainers then generate
    completions of exactly that length, as with :func:`build_model_dir`)."""
    from transformers import GenerationConfig

    source = Path(source).resolve()
    if not (source / "config.json").exists():
        raise FileNotFoundError(f"{source}: no config.json (import the model first: python -m rerec.gguf_import ...)")
    out.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        link = out / f.name
        if f.name != "generation_config.json" and not link.exists():
            link.symlink_to(f)
    gen = GenerationConfig.from_pretrained(source) if (source / "generation_config.json").exists() else GenerationConfig()
    gen.min_new_tokens = min_new_tokens
    gen.save_pretrained(out)
    return out


def real_prompts(release: str | Path, model_dir: str | Path, num_prompts: int, query_type: str = "demographics",
                 num_candidates: int = 20) -> list[str]:
    """The chat-templated candidate prompts ReRec's recipe trains on, as text: the first ``num_prompts``
    training queries of ``query_type`` of a RecBench+ release (the recipe's data settings)."""
    from transformers import AutoTokenizer

    from rerec.data.datamodule import RecDataModule
    from rerec.data.prompts import PromptConfig
    from rerec.rl.policy_builder import encode_prompt

    dm = RecDataModule(root=str(release), query_types=[query_type], num_candidates=num_candidates,
                       test_fraction=0.15, val_fraction=0.25, prompt=PromptConfig(format_example="Heat (1995)"))
    data = dm.load()
    tok = AutoTokenizer.from_pretrained(model_dir)
    return [tok.decode(encode_prompt(tok, t, data)) for t in data.tasks["train"][:num_prompts]]
