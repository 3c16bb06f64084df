"""The policy update of one rollout batch: ``num_iterations`` passes of mini-batch optimizer steps, each
mini-batch split into micro-batches for memory (gradient accumulation).

Every loss aggregation is a sum over the mini-batch divided by the mini-batch's normaliser
(:func:`~rerec.rl.loss.loss_normalizer`), so the loss and its gradient do not depend on how the rows are
split into micro-batches. Mini- and micro-batches hold whole groups of G rollouts when the policy can
share one prompt forward per group.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rerec.rl.importance_sampling import ImportanceStats, importance_weights
from rerec.rl.logprobs import completion_logprobs, grouped_completion_logprobs
from rerec.rl.loss import PolicyLossConfig, PolicyLossOutput, loss_normalizer, policy_loss
from rerec.rl.packed_logprobs import packed_completion_logprobs
from rerec.rl.rollout import Rollouts

__all__ = [
    "BatchSplit", "CompletionLogProbs", "NonFiniteGuard", "NonFiniteTrainingError", "UpdateBatch", "dropout_active",
    "update_policy",
]

log = logging.getLogger("rerec.rl")

#: Skipped optimizer steps whose details ``summary.json`` lists (the count is always complete).
MAX_RECORDED_SKIPS = 100


@dataclass
class BatchSplit:
    """How a rollout batch of N rows is cut for the update (see ``ReRecPolicy``'s arguments).

    Attributes:
        num_iterations: μ, passes over the batch.
        mini_batch_size: Rollouts per optimizer step; ``None``: all N.
        micro_batch_size: Rollouts per forward/backward.
    """

    num_iterations: int = 1
    mini_batch_size: int | None = None
    micro_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1 or null, got {self.mini_batch_size}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")


@dataclass
class UpdateBatch:
    """What the update reads of one rollout batch.

    Attributes:
        rollouts: The token tensors.
        advantages: (N, T) per-token advantages.
        loss_mask: (N, T) tokens that enter the loss (the completion mask, less filtered groups).
        old_logps: (N, T) log-probs of the sampling policy; ``None``: purely on-policy (each micro-batch's
            own log-probs, detached, give ratio 1).
        ref_logps: (N, T) reference log-probs; ``None`` without a KL term.
        engine_logps: (N, T) the rollout engine's sampling log-probs; with the loss's
            ``importance_sampling_correction`` each token's loss is weighted by the truncated ratio of
            the old log-probs to these (:mod:`~rerec.rl.importance_sampling`). ``None``: no correction.
        sampling_logps: (N, T) the trainer's log-probs of the sampled tokens with dropout off, the
            numerator of that ratio instead of the old log-probs (which, on-policy, come from the
            training forward, dropout on: its noise would enter the weights). ``None``: the old ones.
    """

    rollouts: Rollouts
    advantages: Tensor
    loss_mask: Tensor
    old_logps: Tensor | None = None
    ref_logps: Tensor | None = None
    engine_logps: Tensor | None = None
    sampling_logps: Tensor | None = None


class CompletionLogProbs:
    """Completion log-probs of rollout rows under a model, in micro-batches of whole groups.

    Args:
        group_size: Rows that share one prompt forward (G), or 1 when the model cannot share it.
        micro_batch_size: Rows per forward (rounded down to whole groups, at least one group).
        temperature: The sampling temperature (log-probs are of the tempered distribution).
        logits_chunk: Completion columns per LM-head call in the shared-prompt paths (``None``: all);
            see :func:`~rerec.rl.logprobs.grouped_completion_logprobs`.
        packed: Share the prompt by packing each group into one sequence
            (:func:`~rerec.rl.packed_logprobs.packed_completion_logprobs`) instead of through the KV
            cache: what works with gradient checkpointing, which turns the cache off.
    """

    def __init__(self, group_size: int, micro_batch_size: int, temperature: float,
                 logits_chunk: int | None = None, packed: bool = False) -> None:
        self.unit = max(group_size, 1)
        self.micro_rows = max(micro_batch_size // self.unit, 1) * self.unit
        self.temperature = temperature
        self.logits_chunk = logits_chunk
        self.packed = packed

    def rows(self, model: nn.Module, ro: Rollouts, rows: Tensor, with_entropy: bool = False,
             entropy_grad: bool = False):
        """``(logps, entropy or None)`` of ``rows`` (whole groups when grouped) under ``model``; the
        entropy is differentiable with ``entropy_grad``."""
        if self.unit > 1 and self.packed:
            return packed_completion_logprobs(
                model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_length, self.unit,
                self.temperature, with_entropy, self.logits_chunk, entropy_grad,
            )
        if self.unit > 1:
            return grouped_completion_logprobs(
                model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_length, self.unit,
                self.temperature, with_entropy, self.logits_chunk, entropy_grad,
            )
        return completion_logprobs(
            model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_length, None, self.temperature,
            with_entropy, entropy_grad,
        )

    @torch.no_grad()
    def all(self, model: nn.Module, ro: Rollouts) -> Tensor:
        """(N, T) log-probs of every row, without gradient."""
        n = ro.input_ids.shape[0]
        step = self.micro_rows
        return torch.cat([self.rows(model, ro, torch.arange(s, min(s + step, n)))[0] for s in range(0, n, step)])


class NonFiniteTrainingError(RuntimeError):
    """Training met NaN or infinite values it cannot step over: too many optimizer steps in a row with a
    non-finite loss or gradient norm, a non-finite reward, or a policy whose outputs are not finite."""


class NonFiniteGuard:
    """Skips an optimizer step whose loss or gradient norm is NaN or infinite, and stops a diverging run.

    A skipped step applies nothing: its gradients are zeroed, the optimizer and the learning-rate
    schedule do not move. Each skip is logged (RL step, mini-batch, which quantity, its value) and
    counted; ``max_consecutive`` skips in a row raise :class:`NonFiniteTrainingError`.

    Args:
        max_consecutive: Consecutive skipped optimizer steps that stop the run (>= 1).
        any_rank: With several processes, whether any rank's decision is True (all ranks must skip the
            same steps); ``None``: one process.
    """

    def __init__(self, max_consecutive: int = 5, any_rank: Callable[[bool], bool] | None = None) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive_skips must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.any_rank = any_rank
        self.consecutive = 0
        self.skipped = 0
        self.events: list[dict[str, Any]] = []
        self.step = 0  # the RL step being updated, for messages

    def allows(self, loss: Tensor, grad_norm: Tensor, mini_batch: int) -> bool:
        """Whether the optimizer step of ``mini_batch`` may go ahead; counts and logs it when not."""
        values = {"loss": float(loss), "grad_norm": float(grad_norm)}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        skip = bool(bad) if self.any_rank is None else self.any_rank(bool(bad))
        if not skip:
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        what = ", ".join(f"{k}={v}" for k, v in bad.items()) or "another rank's values"
        event = {"step": self.step, "mini_batch": mini_batch, "non_finite": what}
        if len(self.events) < MAX_RECORDED_SKIPS:
            self.events.append(event)
        log.warning("RL step %d, mini-batch %d: non-finite %s; optimizer step skipped (%d in a row, %d in all)",
                    self.step, mini_batch, what, self.consecutive, self.skipped)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteTrainingError(
                f"{self.consecutive} optimizer steps in a row were skipped for non-finite values (last: RL step "
                f"{self.step}, mini-batch {mini_batch}: {what}); the policy update diverges: lower optim.lr, "
                f"keep max_grad_norm > 0, or check the reward and the model's dtype (max_consecutive_skips="
                f"{self.max_consecutive})"
            )
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"consecutive": self.consecutive, "skipped": self.skipped, "events": list(self.events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.consecutive = state.get("consecutive", 0)
        self.skipped = state.get("skipped", 0)
        self.events = list(state.get("events", []))


def dropout_active(model: nn.Module) -> bool:
    """Whether a forward of ``model`` now is random: a dropout module with p > 0 in training mode (LoRA's
    ``lora_dropout`` among them)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 and m.training for m in model.modules())


def grad_norm(model: nn.Module) -> Tensor:
    """Global L2 norm of the gradients of ``model``'s parameters (float32; 0 without gradients)."""
    norms = [torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32) for p in model.parameters()
             if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


class _Metrics:
    """Update metrics that do not depend on the micro-batch split: losses summed per mini-batch and
    averaged over mini-batches; token statistics weighted by valid tokens; ratio extremes."""

    _TOKEN_MEANS = ("kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "ratio/mean")
    _OPTIONAL_TOKEN_MEANS = ("top_entropy/kept_frac",)  # logged only when the loss reports them

    def __init__(self) -> None:
        self.loss_sums: dict[str, float] = {"loss": 0.0, "policy_loss": 0.0}
        self.token_sums = dict.fromkeys(self._TOKEN_MEANS, 0.0)
        self.tokens = 0
        self.mini_batches = 0
        self.ratio_min, self.ratio_max = float("inf"), float("-inf")
        self.entropy_sum, self.entropy_tokens = 0.0, 0
        self.grad_norms: list[float] = []
        self.skipped = 0
        self.importance = ImportanceStats()

    def add(self, out: PolicyLossOutput, loss_tokens: int, entropy: Tensor, valid: Tensor) -> None:
        for k in self.loss_sums:
            self.loss_sums[k] += out.metrics[k]
        for k in self._TOKEN_MEANS:
            self.token_sums[k] += out.metrics[k] * loss_tokens
        for k in self._OPTIONAL_TOKEN_MEANS:
            if k in out.metrics:
                self.token_sums[k] = self.token_sums.get(k, 0.0) + out.metrics[k] * loss_tokens
        self.tokens += loss_tokens
        if loss_tokens:
            self.ratio_min = min(self.ratio_min, out.metrics["ratio/min"])
            self.ratio_max = max(self.ratio_max, out.metrics["ratio/max"])
        self.entropy_sum += float(entropy.detach()[valid].sum())
        self.entropy_tokens += int(valid.sum())

    def result(self) -> dict[str, float]:
        out = {k: v / max(self.mini_batches, 1) for k, v in self.loss_sums.items()}
        out.update({k: (v / self.tokens if self.tokens else (1.0 if k == "ratio/mean" else 0.0))
                    for k, v in self.token_sums.items()})
        out["ratio/min"] = self.ratio_min if self.tokens else 1.0
        out["ratio/max"] = self.ratio_max if self.tokens else 1.0
        out["entropy"] = self.entropy_sum / max(self.entropy_tokens, 1)
        if self.grad_norms:  # measured by the non-finite guard (before clipping)
            out["grad_norm"] = sum(self.grad_norms) / len(self.grad_norms)
            out["train/skipped_steps"] = float(self.skipped)
        out.update(self.importance.result())
        return out


def update_policy(
    policy: nn.Module,
    batch: UpdateBatch,
    logprobs: CompletionLogProbs,
    loss_config: PolicyLossConfig,
    split: BatchSplit,
    backward: Callable[[Tensor], None],
    zero_grad: Callable[[], None],
    optimizer_step: Callable[[], None],
    guard: NonFiniteGuard | None = None,
) -> dict[str, float]:
    """Run the update of one rollout batch; returns its metrics (``loss``, ``policy_loss``, ``kl``, clip
    ratios, ``ratio/*``, ``entropy``, ``grad_norm`` before clipping, ``train/skipped_steps``, with the
    importance-sampling correction ``is_ratio/mean``, ``/max``, ``/clipped_frac``, and with
    ``top_entropy_quantile`` < 1 ``top_entropy/kept_frac``, the share of loss tokens the surrogate kept).

    ``backward(loss)`` accumulates gradients (Lightning's ``manual_backward``); ``optimizer_step()``
    clips, steps the optimizer and the scheduler. With a ``guard``, a mini-batch whose loss or gradient
    norm is not finite gets no optimizer step (its gradients are zeroed; see :class:`NonFiniteGuard`).
    Rows are visited in order unless a batch is cut into several mini-batches or passed over more than
    once, when whole groups are shuffled.
    """
    ro = batch.rollouts
    unit = logprobs.unit
    n_units = ro.input_ids.shape[0] // unit
    mini = max((split.mini_batch_size or n_units * unit) // unit, 1)
    micro = min(max(split.micro_batch_size // unit, 1), mini)
    with_ref = batch.ref_logps is not None and loss_config.beta > 0
    with_is = batch.engine_logps is not None and loss_config.importance_sampling_correction
    cap = loss_config.importance_sampling_cap
    metrics = _Metrics()
    metrics.importance.masking = loss_config.importance_sampling_mode.endswith("mask")
    for _ in range(split.num_iterations):
        shuffle = split.num_iterations > 1 or mini < n_units
        order = torch.randperm(n_units) if shuffle else torch.arange(n_units)
        for start in range(0, n_units, mini):
            units = order[start : start + mini]
            rows_mini = (units.unsqueeze(1) * unit + torch.arange(unit)).flatten()
            normalizer = loss_normalizer(batch.loss_mask[rows_mini], loss_config)
            zero_grad()
            loss_sum = torch.zeros((), device=batch.advantages.device)
            for m in range(0, len(rows_mini), micro * unit):
                rows = rows_mini[m : m + micro * unit]
                logps, entropy = logprobs.rows(policy, ro, rows, with_entropy=True,
                                               entropy_grad=loss_config.entropy_coef > 0)
                mask = batch.loss_mask[rows]
                old = batch.old_logps[rows] if batch.old_logps is not None else logps.detach()
                weights = None
                if with_is:
                    trainer = batch.sampling_logps[rows] if batch.sampling_logps is not None else old
                    weights, raw = importance_weights(trainer, batch.engine_logps[rows], mask, cap,
                                                      loss_config.importance_sampling_mode)
                    metrics.importance.add(raw, mask, cap)
                out = policy_loss(
                    logps, old, batch.advantages[rows], mask, batch.ref_logps[rows] if with_ref else None,
                    loss_config, normalizer=normalizer, is_weights=weights,
                    entropy=entropy if loss_config.needs_entropy else None,
                )
                backward(out.loss)
                loss_sum = loss_sum + out.loss.detach()
                metrics.add(out, int(mask.sum()), entropy, ro.completion_mask[rows])
            metrics.mini_batches += 1
            if guard is not None:
                norm = grad_norm(policy)
                metrics.grad_norms.append(float(norm))
                if not guard.allows(loss_sum, norm, metrics.mini_batches - 1):
                    zero_grad()  # nothing of this mini-batch is applied
                    metrics.skipped += 1
                    continue
            optimizer_step()
    return metrics.result()
