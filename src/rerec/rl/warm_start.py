"""Short supervised warm start on correct reasoning traces, so RL starts from a policy that answers in
the expected format (the embedded tiny model starts from random weights).

Two phases:

1. **Copy pre-training** (``copy_steps``, tiny model only). A transformer trained from scratch sits on a
   long plateau before it can copy from its context at all (the "induction head" phase change); a
   pretrained LLM has that ability, the random tiny model does not. Two synthetic tasks:

   - ``repeat``: random tokens shown twice, loss on the repeat (``x x``). Learned quickly, but by a
     *positional* shortcut (attend a fixed distance back), which does not help to find a fact among the
     candidates.
   - ``recall``: random key/value pairs, then the same pairs in a new random order, loss on the values.
     Only a content-based lookup solves it — find the earlier occurrence of the current token, copy the
     token after it — which is the candidate task's own lookup ("director Ann Lee" → the title that
     follows " Ann Lee" in the prompt). The tiny model forms it only after a long plateau, and only at a
     moderate learning rate, hence the copy phase's own ``copy_lr`` (measurements: docs/tiny-world.md).
2. **Trace SFT** (``steps``): next-token cross-entropy on the completion tokens only (prompt masked),
   optionally with a recall batch (``copy_mix``) and a batch of the catalog's facts (``knowledge_batch_size``,
   ``rerec.data.prompts.knowledge_lines``) added to every step: a model trained from scratch knows no film,
   and an implicit request ("the studio behind The Restless Garden") needs a fact that the request does
   not state.

The result is cached on disk under a key of everything that determines it, so repeated runs (tests,
ablations with several seeds of RL) share one warm-started checkpoint instead of re-training it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rerec.atomic import atomic_path
from rerec.progress import progress
from rerec.rl.logprobs import decoder_and_head

log = logging.getLogger("rerec.rl")


@dataclass
class WarmStartConfig:
    """Supervised warm start before RL (0 steps = off).

    Args:
        steps: Optimizer steps of supervised training on reasoning traces; 0 disables the warm start.
        target: What the completions are: ``trace`` (the synthetic world's reasoning trace, for the tiny
            model: recall, needs, the deciding fact, the box) or ``answer`` (a format warm start for a
            pretrained model that does not end with ``\\boxed{}``: the query's stated reason when the
            release has one, then the ground-truth title in the box). Either way only the warm-start
            share of the *training* split is used, never a held-out query.
        copy_steps: Copy pre-training steps before the trace SFT (0 = none; for models trained from
            scratch, see the docstring of ``rerec.rl.warm_start``).
        copy_task: ``repeat`` (random sequence shown twice) or ``recall`` (key/value pairs shown again in a
            shuffled order: a content-based lookup); see the docstring of ``rerec.rl.warm_start``.
        copy_length: Length of each random sequence (``repeat``) or number of key/value pairs
            (``recall``).
        copy_batch_size: Sequences per copy step.
        copy_lr: Learning rate of the copy phase (constant; ``null`` = ``lr``).
        copy_mix: Also add a copy batch (half size) to every trace-SFT step, so the copy circuit is kept
            while the task learns to use it (requires a copy vocabulary, like ``copy_steps``).
        lr: Peak learning rate (linear warm-up, then linear decay to 0).
        batch_size: Examples per step.
        micro_batch_size: Examples per forward/backward (gradient accumulation inside a step; the loss
            stays the mean over the step's completion tokens). Set, the LM head also runs on completion
            positions only, so a pretrained model's long prompts never materialise vocabulary-sized
            logits. ``null``: the whole batch in one forward with the model's own loss.
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW weight decay.
        max_grad_norm: Gradient clipping.
        knowledge_batch_size: Catalog facts (``knowledge_lines``: "Recall <film>: <relation> <value>.",
            loss on the value) added to every trace-SFT step (0 = none). A model trained from scratch knows
            no film; a pretrained LLM knows most. Without the facts the tiny model must recall a referenced
            film's director from the few traces that mention it, and implicit/misinformed requests stay
            near chance.
        max_examples: Use at most this many training tasks (``null`` = all). Fewer examples or steps leave
            more for RL to learn.
        cache_dir: Folder where the warm-started weights are cached by a hash of every input that
            determines them (``null`` = no cache).
        seed: Seed of the example order.
    """

    steps: int = 0
    target: Literal["trace", "answer"] = "trace"
    copy_steps: int = 0
    copy_task: Literal["repeat", "recall"] = "repeat"
    copy_length: int = 12
    copy_batch_size: int = 64
    copy_lr: float | None = None
    copy_mix: bool = False
    knowledge_batch_size: int = 0
    lr: float = 3e-3
    batch_size: int = 16
    micro_batch_size: int | None = None
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_examples: int | None = None
    cache_dir: str | None = ".cache/rerec/warm_start"
    seed: int = 0

    def __post_init__(self) -> None:
        # jsonargparse passes ``--...cache_dir null`` inside subclass init_args as the string "None".
        if self.cache_dir in ("None", "null", ""):
            self.cache_dir = None
        if self.knowledge_batch_size < 0:
            raise ValueError(f"warm_start.knowledge_batch_size must be >= 0, got {self.knowledge_batch_size}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"warm_start.micro_batch_size must be >= 1 or null, got {self.micro_batch_size}")
        if self.target not in ("trace", "answer"):
            raise ValueError(f"warm_start.target must be 'trace' or 'answer', got {self.target!r}")
        if self.copy_task not in COPY_TASKS:
            raise ValueError(f"warm_start.copy_task must be one of {sorted(COPY_TASKS)}, got {self.copy_task!r}")


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (dataclasses via ``vars``)."""
    blob = json.dumps([p if isinstance(p, (dict, list, str, int, float, type(None))) else vars(p) for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def vocab_fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's token → id map, for cache keys of weights that depend on the token ids."""
    return hashlib.sha1(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:16]


def sequences_fingerprint(*example_lists: Sequence[tuple[list[int], list[int]]]) -> str:
    """A hash of (prompt ids, completion ids) training pairs, for cache keys of weights trained on them."""
    h = hashlib.sha1()
    for examples in example_lists:
        h.update(b"\x1e")
        for prompt, completion in examples:
            h.update(json.dumps([prompt, completion]).encode())
    return h.hexdigest()[:16]


def _batches(examples: Sequence[tuple[list[int], list[int]]], steps: int, batch_size: int, seed: int, pad_id: int):
    """``steps`` padded (ids, mask, labels) batches, epochs of seeded permutations; loss on completions."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += list(rng.permutation(len(examples)))
        chosen, order = order[:batch_size], order[batch_size:]
        seqs = [examples[i] for i in chosen]
        width = max(len(p) + len(c) for p, c in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        for row, (p, c) in enumerate(seqs):
            n = len(p) + len(c)
            ids[row, :n] = torch.as_tensor(p + c)
            mask[row, :n] = 1
            labels[row, len(p) : n] = torch.as_tensor(c)
        yield ids, mask, labels


def repeat_batch(vocab: tuple[int, int], length: int, batch_size: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x x`` sequences and their labels: loss on the repeat after its first token (ids, labels)."""
    x = torch.randint(vocab[0], vocab[1], (batch_size, length), generator=gen)
    ids = torch.cat([x, x], dim=1)
    labels = ids.clone()
    labels[:, : length + 1] = -100
    return ids, labels


def recall_batch(vocab: tuple[int, int], pairs: int, batch_size: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``k1 v1 … kn vn`` then the same pairs in a random order; labels only on the second values.

    Keys are distinct within a sequence, so each value is determined by the earlier occurrence of its
    key, and a shuffled order leaves no fixed distance to copy from.
    """
    if vocab[1] - vocab[0] < pairs:
        raise ValueError(f"recall copy task: {pairs} distinct keys need a vocabulary of at least that size")
    span = vocab[1] - vocab[0]
    keys = torch.stack([torch.randperm(span, generator=gen)[:pairs] for _ in range(batch_size)]) + vocab[0]
    values = torch.randint(vocab[0], vocab[1], (batch_size, pairs), generator=gen)
    order = torch.stack([torch.randperm(pairs, generator=gen) for _ in range(batch_size)])
    first = torch.stack([keys, values], dim=-1).reshape(batch_size, -1)
    second = torch.stack([keys.gather(1, order), values.gather(1, order)], dim=-1).reshape(batch_size, -1)
    ids = torch.cat([first, second], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, 2 * pairs + 1 :: 2] = ids[:, 2 * pairs + 1 :: 2]
    return ids, labels


COPY_TASKS = {"repeat": repeat_batch, "recall": recall_batch}


def _copy_loss(model: torch.nn.Module, cfg: WarmStartConfig, vocab: tuple[int, int], gen: torch.Generator,
               batch_size: int) -> torch.Tensor:
    """LM loss of one batch of the configured copy task."""
    device = next(model.parameters()).device
    ids, labels = COPY_TASKS[cfg.copy_task](vocab, cfg.copy_length, batch_size, gen)
    return model(input_ids=ids.to(device), labels=labels.to(device)).loss


def completion_token_loss(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                          micro_batch_size: int | None) -> float:
    """Mean next-token cross-entropy over the labelled tokens of one batch, back-propagated micro-batch
    by micro-batch; returns its value.

    Each micro-batch's summed loss is divided by the whole batch's label count, so the gradient equals
    the one-forward mean's for any ``micro_batch_size``. The LM head runs only on positions whose next
    token is labelled (models without ``get_decoder``/``get_output_embeddings`` use their own loss).
    """
    device = next(model.parameters()).device
    total = int((labels[:, 1:] != -100).sum())
    split = decoder_and_head(model)
    step = micro_batch_size or ids.shape[0]
    value = 0.0
    for start in range(0, ids.shape[0], step):
        rows = slice(start, start + step)
        x, m, y = ids[rows].to(device), mask[rows].to(device), labels[rows].to(device)
        count = int((y[:, 1:] != -100).sum())
        if count == 0:
            continue
        if split is not None:
            decoder, head = split
            hidden = decoder(input_ids=x, attention_mask=m).last_hidden_state[:, :-1]
            keep = y[:, 1:] != -100
            logits = head(hidden[keep]).float()
            loss_sum = torch.nn.functional.cross_entropy(logits, y[:, 1:][keep], reduction="sum")
        else:
            loss_sum = model(input_ids=x, attention_mask=m, labels=y).loss * count
        (loss_sum / total).backward()
        value += float(loss_sum.detach()) / total
    return value


def _tail_mean(losses: Sequence[float], n: int = 10) -> float | None:
    """Mean of the last ``n`` logged losses (the "final loss" of a phase); ``None`` when nothing was logged."""
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else None


def _copy_pretrain(model: torch.nn.Module, cfg: WarmStartConfig, vocab: tuple[int, int]) -> float | None:
    """Copy phase: returns the mean loss of its last steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    copy_lr = cfg.lr if cfg.copy_lr is None else cfg.copy_lr
    opt = torch.optim.AdamW(params, lr=copy_lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for step in progress(range(cfg.copy_steps), desc="warm start: lookup", unit="step"):
        loss = _copy_loss(model, cfg, vocab, gen, cfg.copy_batch_size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.copy_steps - 1:
            log.info("warm start copy step %d/%d loss %.4f", step + 1, cfg.copy_steps, losses[-1])
    return _tail_mean(losses)


def run_warm_start(
    model: torch.nn.Module,
    examples: Sequence[tuple[list[int], list[int]]],
    cfg: WarmStartConfig,
    pad_id: int,
    key: str | None = None,
    copy_vocab: tuple[int, int] | None = None,
    knowledge: Sequence[tuple[list[int], list[int]]] = (),
) -> dict[str, Any]:
    """Train ``model`` in place on (prompt ids, completion ids) pairs, or load the cached result.

    ``copy_vocab`` = (first, end) token-id range drawn by the copy phase (e.g. skip special tokens).
    ``knowledge``: (prefix ids, value ids) fact pairs, ``knowledge_batch_size`` of them in every step.
    Returns ``{"steps", "copy_steps", "copy_final_loss", "final_loss", "copy_mix_final_loss",
    "knowledge_final_loss", "time_s", "cached"}``.
    """
    device = next(model.parameters()).device
    if key and device.type == "cpu":
        # On a CPU the result depends on the thread count (reduction order): 1 and 2 threads train
        # different checkpoints (docs/tiny-world.md), so they are cached apart.
        key = f"{key}-t{torch.get_num_threads()}"
    cache = Path(cfg.cache_dir) / f"{key}.pt" if cfg.cache_dir and key else None
    if cache is not None and cache.exists():
        state = torch.load(cache, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        log.info("warm start: loaded cached weights %s", cache)
        return {**state["stats"], "cached": True}
    if not examples:
        raise ValueError("warm start: no training example")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    decay = max(cfg.steps - cfg.warmup_steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(cfg.warmup_steps, 1), max(0.0, 1 - (s - cfg.warmup_steps) / decay))
    )
    was_training = model.training
    model.train()
    start, losses = time.perf_counter(), []
    copy_loss = None
    if cfg.knowledge_batch_size > 0 and not knowledge:
        raise ValueError("warm start: knowledge_batch_size > 0 but no knowledge line was given")
    if (cfg.copy_steps > 0 or cfg.copy_mix) and copy_vocab is None:
        raise ValueError("warm start: the copy phase needs copy_vocab (a token-id range)")
    if cfg.copy_steps > 0:
        copy_loss = _copy_pretrain(model, cfg, copy_vocab)
    mix_gen = torch.Generator().manual_seed(cfg.seed + 1)
    mix_losses: list[float] = []
    facts = (_batches(knowledge, cfg.steps, cfg.knowledge_batch_size, cfg.seed + 2, pad_id)
             if cfg.knowledge_batch_size > 0 else None)
    fact_losses: list[float] = []
    batches = _batches(examples, cfg.steps, cfg.batch_size, cfg.seed, pad_id)
    bar = progress(batches, total=cfg.steps, desc="warm start: traces", unit="step")
    for step, (ids, mask, labels) in enumerate(bar):
        if cfg.micro_batch_size is not None:  # backward inside, micro-batch by micro-batch
            trace_loss = completion_token_loss(model, ids, mask, labels, cfg.micro_batch_size)
            loss = None
        else:
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
            loss, trace_loss = out.loss, None
        if cfg.copy_mix:
            mix_loss = _copy_loss(model, cfg, copy_vocab, mix_gen, max(cfg.copy_batch_size // 2, 1))
            mix_losses.append(mix_loss.item())
            loss = mix_loss if loss is None else loss + mix_loss
        if facts is not None:
            f_ids, f_mask, f_labels = next(facts)
            fact_loss = model(input_ids=f_ids.to(device), attention_mask=f_mask.to(device),
                              labels=f_labels.to(device)).loss
            fact_losses.append(fact_loss.item())
            loss = fact_loss if loss is None else loss + fact_loss
        if loss is not None:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item() if trace_loss is None else trace_loss)
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info("warm start step %d/%d loss %.4f%s%s", step + 1, cfg.steps, losses[-1],
                     f" (copy {mix_losses[-1]:.4f})" if mix_losses else "",
                     f" (facts {fact_losses[-1]:.4f})" if fact_losses else "")
    model.train(was_training)
    stats = {
        "steps": cfg.steps, "copy_steps": cfg.copy_steps, "copy_final_loss": copy_loss,
        "final_loss": _tail_mean(losses), "time_s": time.perf_counter() - start,
        "copy_mix_final_loss": _tail_mean(mix_losses), "knowledge_final_loss": _tail_mean(fact_losses),
    }
    if not math.isfinite(stats["final_loss"]):
        raise FloatingPointError(f"warm start diverged (loss {stats['final_loss']}); lower warm_start.lr")
    if cache is not None:
        with atomic_path(cache) as tmp:
            torch.save({"model": model.state_dict(), "stats": stats}, tmp)
    return {**stats, "cached": False}
