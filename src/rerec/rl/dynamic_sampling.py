"""DAPO's dynamic sampling: update on informative groups only, drawing more prompts until there are enough.

A group of G rollouts whose rewards are all equal gets zero GRPO advantage: it costs generation and
gives no gradient. Dynamic sampling (Yu et al. 2025, *DAPO*; verl's ``algorithm.filter_groups`` with
``max_num_gen_batches``) keeps only the groups whose rewards vary and keeps generating until the update
has a full batch of them. Here each training step still receives one batch of B prompts from the
curriculum's sampler, generates, scores and reports its groups to the curriculum (so the curriculum's
statistics see every generated group and its position advances by every batch drawn); the informative
groups are buffered, and the policy is updated only once B of them are buffered, or after
``max_num_gen_batches`` generation batches with what was found. Steps that only generate make no
optimizer step, so ``trainer.max_steps`` still counts updates. The first B buffered groups are trained
on; the surplus of the last batch is dropped (as in verl).

When no group of those batches was informative, the last batch is trained on as generated (its groups
give no gradient under GRPO, but RAAE's penalties and the KL term still act, and the step is counted,
so a run whose groups have all converged still ends). Under DDP every rank updates at the same step, on
the same number of groups: the smallest number any rank has buffered (each rank keeps its own groups, as
groups never straddle ranks).

The buffer lives in memory only: a run interrupted between two updates and resumed regenerates those
batches' groups from the curriculum's next prompts (checkpoints written by ``every_n_train_steps`` fall on
update steps, where the buffer is empty).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rerec.rl.rollout import Rollouts
from rerec.rl.update import UpdateBatch

__all__ = ["DynamicSampler", "DynamicSamplingConfig", "merge_update_batches"]


@dataclass
class DynamicSamplingConfig:
    """DAPO dynamic sampling (see :mod:`rerec.rl.dynamic_sampling`).

    Args:
        enabled: Update only on groups whose rewards vary (population std above ``loss.zero_std_tol``),
            generating more batches of prompts until B of them are found. Off by default.
        max_num_gen_batches: Most generation batches per update (>= 1; verl's name). At the limit the
            update trains on the informative groups found so far.
    """

    enabled: bool = False
    max_num_gen_batches: int = 4

    def __post_init__(self) -> None:
        if self.max_num_gen_batches < 1:
            raise ValueError(f"dynamic_sampling.max_num_gen_batches must be >= 1, got {self.max_num_gen_batches}")


def _rows(batch: UpdateBatch, rows: Tensor) -> UpdateBatch:
    """The ``rows`` of ``batch`` (a subset of whole groups)."""
    ro = batch.rollouts
    sub = Rollouts(
        ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_length, ro.completion_ids[rows],
        ro.completion_mask[rows], ro.truncated[rows], [ro.texts[i] for i in rows.tolist()],
        None if ro.logprobs is None else ro.logprobs[rows],
    )
    pick = (lambda t: None if t is None else t[rows])
    return UpdateBatch(sub, batch.advantages[rows], batch.loss_mask[rows], pick(batch.old_logps),
                       pick(batch.ref_logps), pick(batch.engine_logps), pick(batch.sampling_logps))


def _pad_cols(t: Tensor, width: int, value: float | int | bool, left: bool = False) -> Tensor:
    extra = width - t.shape[1]
    if extra == 0:
        return t
    pad = torch.full((t.shape[0], extra), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def merge_update_batches(parts: list[UpdateBatch], pad_id: int) -> UpdateBatch:
    """One :class:`UpdateBatch` of the rows of ``parts``: prompts left-padded to the longest prompt block,
    completions and every (N, T) tensor right-padded to the longest completion block (padding is masked
    out: 0 attention, no loss token, 0 advantage)."""
    if len(parts) == 1:
        return parts[0]
    p = max(b.rollouts.prompt_length for b in parts)
    t = max(b.rollouts.completion_ids.shape[1] for b in parts)

    def cat(get: Callable[[UpdateBatch], Tensor | None], value: float | int | bool) -> Tensor | None:
        values = [get(b) for b in parts]
        if any(v is None for v in values):
            if not all(v is None for v in values):
                raise ValueError("merge_update_batches: a tensor is present in some parts and not in others")
            return None
        return torch.cat([_pad_cols(v, t, value) for v in values])  # type: ignore[arg-type]

    prompts, prompt_masks = [], []
    for b in parts:
        ro = b.rollouts
        prompts.append(_pad_cols(ro.input_ids[:, : ro.prompt_length], p, pad_id, left=True))
        prompt_masks.append(_pad_cols(ro.attention_mask[:, : ro.prompt_length], p, 0, left=True))
    completion_ids = cat(lambda b: b.rollouts.completion_ids, pad_id)
    completion_attention = cat(lambda b: b.rollouts.attention_mask[:, b.rollouts.prompt_length :], 0)
    ro = Rollouts(
        torch.cat([torch.cat(prompts), completion_ids], dim=1),
        torch.cat([torch.cat(prompt_masks), completion_attention], dim=1),
        p, completion_ids, cat(lambda b: b.rollouts.completion_mask, False),
        torch.cat([b.rollouts.truncated for b in parts]), [s for b in parts for s in b.rollouts.texts],
        cat(lambda b: b.rollouts.logprobs, 0.0),
    )
    return UpdateBatch(ro, cat(lambda b: b.advantages, 0.0), cat(lambda b: b.loss_mask, False),
                       cat(lambda b: b.old_logps, 0.0), cat(lambda b: b.ref_logps, 0.0),
                       cat(lambda b: b.engine_logps, 0.0), cat(lambda b: b.sampling_logps, 0.0))


class DynamicSampler:
    """Buffers the informative groups of successive generation batches and says when to update.

    Args:
        config: The options.
        group_size: G.
        pad_id: The tokenizer's pad id (to pad batches of different widths together).
        min_over_ranks: The smallest of an integer over all ranks (identity on one process).
    """

    def __init__(self, config: DynamicSamplingConfig, group_size: int, pad_id: int,
                 min_over_ranks: Callable[[int], int] = lambda v: v) -> None:
        self.config = config
        self.group_size = group_size
        self.pad_id = pad_id
        self.min_over_ranks = min_over_ranks
        self.parts: list[UpdateBatch] = []
        self.groups = 0
        self.gen_batches = 0
        self.generated_groups = 0

    def offer(self, batch: UpdateBatch, informative: Tensor,
              target_groups: int) -> tuple[UpdateBatch, dict[str, float]] | None:
        """Take one generation batch; ``informative`` is ``(groups,)`` bool. Returns the batch to update on
        and its ``train/dynamic_sampling/*`` metrics when the update is due, else ``None`` (generate more).

        Call on every rank at every training step (the decision is a collective).
        """
        g = self.group_size
        self.gen_batches += 1
        self.generated_groups += informative.numel()
        keep = informative.nonzero().flatten().cpu()
        if keep.numel():
            rows = (keep[:, None] * g + torch.arange(g)).flatten().to(batch.advantages.device)
            self.parts.append(_rows(batch, rows))
            self.groups += keep.numel()
        count = self.min_over_ranks(min(self.groups, target_groups))
        if count < target_groups and self.gen_batches < self.config.max_num_gen_batches:
            return None
        if count == 0:
            chosen, kept = batch, 0
        else:
            merged = merge_update_batches(self.parts, self.pad_id)
            chosen, kept = _rows(merged, torch.arange(count * g, device=merged.advantages.device)), count
        metrics = {
            "train/dynamic_sampling/gen_batches": float(self.gen_batches),
            "train/dynamic_sampling/extra_generations": float((self.generated_groups - informative.numel()) * g),
            "train/dynamic_sampling/groups_kept": float(kept),
            "train/dynamic_sampling/informative_frac": self.groups / max(self.generated_groups, 1),
        }
        self.parts, self.groups, self.gen_batches, self.generated_groups = [], 0, 0, 0
        return chosen, metrics
