"""Truncated importance sampling between the rollout engine and the trainer.

A vLLM engine samples with its own kernels: its probability of a sampled token differs slightly from
the trainer's for the same weights (bf16 reductions, fused kernels, a quantized base). The policy
gradient is an expectation under the trainer's sampling policy ``π_old``, but the tokens came from the
engine's ``π_engine``; each token's loss is therefore weighted by ``w = π_old(t) / π_engine(t)``,
truncated at ``cap`` so one token the engine found unlikely cannot dominate the batch (truncated
importance sampling, as in TRL's ``vllm_importance_sampling_correction``). Tokens whose weight is
capped are counted as ``is_ratio/clipped_frac``.

``importance_sampling_mode`` (TRL's ``vllm_importance_sampling_mode``) picks the level and what happens
above the cap: ``token_*`` weighs each token by its own ratio; ``sequence_*`` weighs every token of a
completion by the completion's ratio, the product of its token ratios ``exp(Σ_t (old − engine))`` (not
length-normalised, as in TRL); ``*_truncate`` caps the weight at ``cap``; ``*_mask`` gives weight 0 to a
token (or a whole completion) whose ratio is above ``cap`` — dropped from the gradient, still counted in
the loss normaliser — logged as ``is_ratio/masked_frac`` (share of loss tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["IMPORTANCE_SAMPLING_MODES", "ImportanceStats", "importance_weights", "truncated_importance_weights"]

IMPORTANCE_SAMPLING_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


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


def importance_weights(old_logps: Tensor, engine_logps: Tensor, mask: Tensor, cap: float,
                       mode: str = "token_truncate") -> tuple[Tensor, Tensor]:
    """``(weights, raw)`` of ``mode`` (see the module docstring), both ``(N, T)`` and 1 on padding; ``raw``
    is the untruncated ratio each token's weight came from (its completion's under ``sequence_*``).

    Args:
        old_logps: ``(N, T)`` log-probs of the sampled tokens under the trainer's sampling policy.
        engine_logps: ``(N, T)`` the engine's log-probs of the same tokens.
        mask: ``(N, T)`` True on the loss tokens (a completion's ratio is the product over these).
        cap: The cap (>= 1).
        mode: ``token_truncate``, ``token_mask``, ``sequence_truncate`` or ``sequence_mask``.
    """
    if mode not in IMPORTANCE_SAMPLING_MODES:
        raise ValueError(f"importance_sampling_mode must be one of {IMPORTANCE_SAMPLING_MODES}, got {mode!r}")
    mask = mask.bool()
    zero = torch.zeros((), dtype=torch.float32, device=old_logps.device)
    log_ratio = torch.where(mask, old_logps.detach().float() - engine_logps.detach().float(), zero)
    if mode.startswith("sequence"):
        log_ratio = torch.where(mask, log_ratio.sum(-1, keepdim=True).expand_as(log_ratio), zero)
    raw = torch.exp(log_ratio.clamp(max=50.0))  # exp(50) already far above any cap; keeps it finite
    if mode.endswith("truncate"):
        return raw.clamp(max=cap), raw
    return torch.where(raw > cap, zero, raw), raw


@dataclass
class ImportanceStats:
    """Token statistics of the importance ratios of one update, for ``is_ratio/mean``, ``/max`` and
    ``/clipped_frac`` (share of tokens whose ratio is above the cap), and with a ``*_mask`` mode
    ``/masked_frac`` (share of tokens given weight 0); independent of how the batch is split into
    micro-batches."""

    total: float = 0.0
    tokens: int = 0
    maximum: float = float("-inf")
    clipped: int = 0
    masking: bool = False

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
        out = {
            "is_ratio/mean": self.total / self.tokens,
            "is_ratio/max": self.maximum,
            "is_ratio/clipped_frac": self.clipped / self.tokens,
        }
        if self.masking:  # the tokens above the cap are the ones a mask mode drops
            out["is_ratio/masked_frac"] = self.clipped / self.tokens
        return out
