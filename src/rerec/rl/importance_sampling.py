"""Truncated importance sampling between the rollout engine and the trainer.

A vLLM engine samples with its own kernels: its probability of a sampled token differs slightly from
the trainer's for the same weights (bf16 reductions, fused kernels, a quantized base). The policy
gradient is an expectation under the trainer's sampling policy ``π_old``, but the tokens came from the
engine's ``π_engine``; each token's loss is therefore weighted by ``w = π_old(t) / π_engine(t)``,
truncated at ``cap`` so one token the engine found unlikely cannot dominate the batch (truncated
importance sampling, as in TRL's ``vllm_importance_sampling_correction``). Tokens whose weight is
capped are counted as ``is_ratio/clipped_frac``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ImportanceStats", "truncated_importance_weights"]


def truncated_importance_weights(old_logps: Tensor, engine_logps: Tensor, mask: Tensor, cap: float) -> tuple[Tensor, Tensor]:
    """``(weights, raw)``: ``min(exp(old − engine), cap)`` and the untruncated ratio, both 1 on padding.

    Args:
        old_logps: ``(N, T)`` log-probs of the sampled tokens under the trainer's sampling policy.
        engine_logps: ``(N, T)`` the engine's log-probs of the same tokens.
        mask: ``(N, T)`` True on completion tokens.
        cap: The truncation (>= 1).
    """
    mask = mask.bool()
    zero = torch.zeros((), dtype=torch.float32, device=old_logps.device)
    log_ratio = torch.where(mask, old_logps.detach().float() - engine_logps.detach().float(), zero)
    raw = torch.exp(log_ratio.clamp(max=50.0))  # exp(50) already far above any cap; keeps it finite
    return raw.clamp(max=cap), raw


@dataclass
class ImportanceStats:
    """Token statistics of the importance ratios of one update, for ``is_ratio/mean``, ``/max`` and
    ``/clipped_frac`` (independent of how the batch is split into micro-batches)."""

    total: float = 0.0
    tokens: int = 0
    maximum: float = float("-inf")
    clipped: int = 0

    def add(self, raw: Tensor, mask: Tensor, cap: float) -> None:
        values = raw[mask.bool()]
        if values.numel():
            self.total += float(values.sum())
            self.tokens += values.numel()
            self.maximum = max(self.maximum, float(values.max()))
            self.clipped += int((values > cap).sum())

    def result(self) -> dict[str, float]:
        if not self.tokens:
            return {}
        return {
            "is_ratio/mean": self.total / self.tokens,
            "is_ratio/max": self.maximum,
            "is_ratio/clipped_frac": self.clipped / self.tokens,
        }
