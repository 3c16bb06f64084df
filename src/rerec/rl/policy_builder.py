"""Building the policy of a run: tokenizer, model (hub or tiny), the cached supervised warm start, and
every prompt tokenised once.

Everything here reads the run's :class:`~rerec.data.contract.RecData` only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rerec.data.contract import RecData
from rerec.data.prompts import answer_trace, build_messages, knowledge_lines, natural_title, reasoning_trace
from rerec.data.tasks import RecTask
from rerec.rl.policy_loading import ModelConfig, load_policy, prepare_policy, rebase_policy
from rerec.rl.tiny_model import TinyModelConfig, build_tiny_model, build_tokenizer
from rerec.rl.warm_start import (
    WarmStartConfig,
    cache_key,
    run_warm_start,
    sequences_fingerprint,
    vocab_fingerprint,
)

__all__ = ["TINY", "BuiltPolicy", "build_policy", "encode_prompt"]

#: ``model.name_or_path`` of the tiny model built offline from the data.
TINY = "tiny"


@dataclass
class BuiltPolicy:
    """A policy ready for RL.

    Attributes:
        policy: The prepared model (full, LoRA or QLoRA; warm-started when configured).
        tokenizer: Its tokenizer (left padding).
        prompt_ids: Query id → prompt token ids, for every task of every split.
        warm_start: Warm-start statistics (empty when there was none).
    """

    policy: torch.nn.Module
    tokenizer: Any
    prompt_ids: dict[str, list[int]]
    warm_start: dict[str, Any] = field(default_factory=dict)


def encode_prompt(tokenizer: Any, task: RecTask, data: RecData) -> list[int]:
    """The chat-templated prompt of ``task``, tokenised (the generation prompt included)."""
    messages = build_messages(task, data.items, data.attributes, data.prompt)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False).input_ids


def build_policy(model: ModelConfig, tiny: TinyModelConfig, warm_start: WarmStartConfig, data: RecData) -> BuiltPolicy:
    """Tokenizer and model (the tiny one is built from the data), warm start, then RL preparation."""
    stats: dict[str, Any] = {}
    if model.name_or_path == TINY:
        entities = (
            [it.title for it in data.items.values()]
            + [natural_title(it.title) for it in data.items.values()]  # as requests name them
            + [v for attrs in data.attributes.values() for r, v in attrs if r != "Genre"]
            if tiny.entity_tokens else []
        )
        tokenizer = build_tokenizer(_tiny_corpus(data), tiny.vocab_size, entities)
        base = build_tiny_model(tiny, tokenizer)
        stats = _warm_start(base, tokenizer, model, tiny, warm_start, data)  # before LoRA/reference: the reference is warm
        policy = prepare_policy(base, tokenizer, model)
    else:
        policy, tokenizer = load_policy(model)
        stats = _warm_start(policy, tokenizer, model, tiny, warm_start, data)
        if stats:  # the warm start trained the prepared policy: RL's reference is the warm-started model
            policy = rebase_policy(policy, tokenizer, model)
    prompt_ids = {t.query_id: encode_prompt(tokenizer, t, data) for split in data.tasks.values() for t in split}
    return BuiltPolicy(policy, tokenizer, prompt_ids, stats)


def _tiny_corpus(data: RecData) -> list[str]:
    """Text the tiny tokenizer is trained on: every prompt and every training trace."""
    corpus = []
    for split in [*data.tasks.values(), data.warm_start_tasks]:
        for task in split:
            corpus += [m["content"] for m in build_messages(task, data.items, data.attributes, data.prompt)]
    corpus += [reasoning_trace(t, data.items, data.attributes) for t in data.warm_start_tasks if t.candidate_ids]
    return corpus


def _warm_start(model: torch.nn.Module, tokenizer: Any, model_config: ModelConfig, tiny: TinyModelConfig,
                cfg: WarmStartConfig, data: RecData) -> dict[str, Any]:
    """Supervised warm start on reasoning traces (and the catalog's facts), cached by what decides the
    weights."""
    if cfg.steps <= 0:
        return {}
    tasks = [t for t in data.warm_start_tasks if t.candidate_ids][: cfg.max_examples]
    held_out = {t.query_id for split in ("val", "test") for t in data.tasks.get(split, [])}
    if any(t.query_id in held_out for t in tasks):
        raise ValueError("warm start: a warm-start task is also a held-out (val/test) query")

    def target(t: RecTask) -> str:
        return answer_trace(t, data.items) if cfg.target == "answer" else reasoning_trace(t, data.items, data.attributes)

    examples = [
        (encode_prompt(tokenizer, t, data), tokenizer(target(t) + tokenizer.eos_token, add_special_tokens=False).input_ids)
        for t in tasks
    ]
    knowledge = []
    if cfg.knowledge_batch_size > 0:
        knowledge = [(tokenizer(p, add_special_tokens=False).input_ids, tokenizer(v, add_special_tokens=False).input_ids)
                     for p, v in knowledge_lines(data.items, data.attributes)]
    # The vocabulary is in the key (the tiny tokenizer is trained on the prompts, so a data setting that
    # changes them changes the ids the weights refer to), and so are the training sequences (a new trace
    # format cannot load weights trained on the old text). Where the cache lives is not: a cache folder
    # moved or shared between clones still hits.
    key = cache_key(
        "warm-start/4", vocab_fingerprint(tokenizer), sequences_fingerprint(examples, knowledge),
        model_config.name_or_path, asdict(tiny), {**asdict(cfg), "cache_dir": None}, data.fingerprint,
    )
    # The copy phase draws ordinary tokens (after the special tokens at the start of the vocabulary).
    first = max(tokenizer.all_special_ids) + 1
    return run_warm_start(model, examples, cfg, tokenizer.pad_token_id, key, (first, len(tokenizer)), knowledge)
