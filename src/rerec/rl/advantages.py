"""Advantage estimators: ``grpo``, ``rloo`` and ``reinforce_pp`` here, ``raae`` in :mod:`rerec.rl.raae`.

Every estimator maps one rollout batch (:class:`AdvantageInputs`: ``N = B·G`` rewards, the G rollouts of
a prompt in contiguous rows, a right-padded completion block) to an ``(N, T)`` float advantage tensor
that is 0 wherever ``completion_mask`` is False, plus scalar metrics. They are plain classes whose
constructor arguments are the config knobs, built by LightningCLI from YAML
(``advantage: {class_path: rerec.rl.raae.RAAEAdvantage, init_args: {w_penalty: 0.3}}``).

Statistics: every standard deviation here is the unbiased sample one (Bessel's ``n − 1``, as
``torch.std`` and TRL's GRPO use), computed in float64; a set of fewer than two values has std 0. A group
(or batch) whose values are all equal gets advantage exactly 0, whatever the floating-point mean.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

ScaleRewards = Literal["group", "batch", "none"]


def scale_mode(scale: bool | str) -> ScaleRewards:
    """``scale_rewards`` as one of TRL's names: ``True`` is ``"group"``, ``False`` is ``"none"``."""
    if scale is True or scale is False:
        return "group" if scale else "none"
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be group, batch or none (or true / false), got {scale!r}")
    return scale  # type: ignore[return-value]


@dataclass(kw_only=True)
class AdvantageInputs:
    """What an estimator may use; ``grpo``/``rloo`` need only the first three fields.

    Attributes:
        rewards: (N,) total reward per rollout.
        group_size: G; rows ``b·G … b·G+G−1`` are the rollouts of prompt ``b``.
        completion_mask: (N, T) True on real completion tokens (EOS included).
        completion_ids: (N, T) generated ids, padded with the pad id (``raae``).
        completion_texts: ``decode(ids[mask], skip_special_tokens=True)`` per row (``raae``; optional,
            saves a decode per penalised row).
        recommended_titles: Parsed titles per rollout, ``None`` when unparsable (``raae``; optional).
        wrong_titles: The recommended titles that are wrong, per rollout; empty when the answer is
            correct or unparsable (``raae``).
        tokenizer: The policy's fast tokenizer (``raae``).
        per_token_kl: (N, T) ``log π_old − log π_ref`` (``reinforce_pp`` with ``kl_coef > 0``).
        fact_checker: Graph fact checker, a :class:`rerec.rl.raae.kg_verify.FactChecker` (``raae`` with
            ``kg_verify``; optional, overrides the one built by :meth:`rerec.rl.raae.RAAEAdvantage.setup`).
    """

    rewards: Tensor
    group_size: int
    completion_mask: Tensor
    completion_ids: Tensor | None = None
    completion_texts: Sequence[str] | None = None
    recommended_titles: Sequence[Sequence[str] | None] | None = None
    wrong_titles: Sequence[Sequence[str]] | None = None
    tokenizer: Any = None
    per_token_kl: Tensor | None = None
    fact_checker: Any = None  # typed loosely: this module does not import rerec.rl.raae (no cycle)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when shapes or lengths disagree."""
        if self.rewards.dim() != 1:
            raise ValueError(f"AdvantageInputs.rewards must be (N,), got shape {tuple(self.rewards.shape)}")
        n = self.rewards.shape[0]
        if self.completion_mask.dim() != 2 or self.completion_mask.shape[0] != n:
            raise ValueError(
                f"AdvantageInputs.completion_mask must be (N={n}, T), got {tuple(self.completion_mask.shape)}"
            )
        if self.group_size < 1 or n % self.group_size:
            raise ValueError(f"AdvantageInputs.group_size={self.group_size} does not divide N={n}")
        for name in ("completion_ids", "per_token_kl"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != tuple(self.completion_mask.shape):
                raise ValueError(
                    f"AdvantageInputs.{name} has shape {tuple(value.shape)}, "
                    f"completion_mask {tuple(self.completion_mask.shape)}"
                )
        for name in ("completion_texts", "recommended_titles", "wrong_titles"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"AdvantageInputs.{name} has {len(value)} entries for N={n} rollouts")


@dataclass
class AdvantageOutput:
    """Result of an estimator.

    Attributes:
        advantages: (N, T) float32 on the device of ``completion_mask``, 0 where it is False.
        metrics: Scalars to log, keys prefixed by the estimator (``raae/...``).
        token_rewards: (N, T) the per-token quantity that was normalised (``raae``: token rewards,
            ``reinforce_pp``: returns), 0 on padding; ``None`` for sequence-level estimators.
    """

    advantages: Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    token_rewards: Tensor | None = None


def normalize_groups(
    values: Tensor, mask: Tensor, group_size: int, scale: bool | str, eps: float, centre: Tensor | None = None
) -> Tensor:
    """``(x − mean) / (std + eps)`` (or ``x − mean`` when ``scale`` is False / ``"none"``) over the valid
    entries of each group of ``group_size`` consecutive rows; 0 where ``mask`` is False and in groups whose
    deviations are all 0 (constant groups, or with ``centre`` every entry equal to it).

    Args:
        values: (N, T) values (any float dtype; computed in float64).
        mask: (N, T) bool, which entries count and get a result.
        group_size: Rows per group (N for one batch-wide group).
        scale: ``True`` / ``"group"``: divide by the group's unbiased std, ``sqrt(Σ(x − c)² / (n − 1))``
            with ``c`` the mean or ``centre``. ``"batch"``: divide by one std for the whole batch, the
            unbiased std of all valid entries around their batch mean (TRL's ``scale_rewards="batch"``).
            ``False`` / ``"none"``: no division.
        eps: Added to the std.
        centre: (N // group_size,) value subtracted in each group instead of the mean of its entries.
    """
    n, t = values.shape
    if centre is not None and tuple(centre.shape) != (n // group_size,):
        raise ValueError(f"centre must have shape ({n // group_size},), got {tuple(centre.shape)}")
    m = mask.reshape(n // group_size, group_size * t)
    x = torch.where(m, values.double().reshape(m.shape), 0.0)  # where, not *: padding may hold inf/NaN
    count = m.sum(1, dtype=torch.float64)
    mean = x.sum(1) / count.clamp_min(1.0) if centre is None else centre.double().to(x.device)
    dev = (x - mean[:, None]) * m
    if centre is None:  # max == min: the float mean of equal values need not equal them exactly
        constant = x.masked_fill(~m, float("-inf")).amax(1) == x.masked_fill(~m, float("inf")).amin(1)
    else:  # all equal but off the centre still moves: only exact zeros are cleaned up
        constant = (dev == 0).all(1)
    mode = scale_mode(scale)
    if mode == "group":
        std = ((dev**2).sum(1) / (count - 1.0).clamp_min(1.0)).sqrt()
        dev = dev / (std[:, None] + eps)
    elif mode == "batch":
        total = m.sum(dtype=torch.float64)
        batch_dev = torch.where(m, x - x.sum() / total.clamp_min(1.0), 0.0)
        std = ((batch_dev**2).sum() / (total - 1.0).clamp_min(1.0)).sqrt()
        dev = dev / (std + eps)
    return dev.masked_fill(constant[:, None], 0.0).reshape(n, t)


class AdvantageEstimator(ABC):
    """Base class: ``estimator(inputs) -> AdvantageOutput``.

    ``needs_kl`` tells the policy module whether ``per_token_kl`` must be computed at rollout time;
    :meth:`setup` gives the estimator the run's data once, before the first step.
    """

    name: ClassVar[str]
    min_group_size: ClassVar[int] = 1

    @property
    def needs_kl(self) -> bool:
        """Whether :attr:`AdvantageInputs.per_token_kl` is required."""
        return False

    def setup(self, data: Any) -> None:
        """Called once by the policy with the run's data contract before the first step; a no-op here.

        Args:
            data: An object with at least ``.matcher`` (has ``.match(title)``) and ``.attributes``
                (``{item_id: set of (relation, value)}``): the run's :class:`~rerec.data.contract.RecData`.
        """

    def __call__(self, inputs: AdvantageInputs) -> AdvantageOutput:
        """Validate ``inputs`` and compute the advantages."""
        inputs.validate()
        if inputs.group_size < self.min_group_size:
            raise ValueError(f"{self.name} needs group_size >= {self.min_group_size}, got {inputs.group_size}")
        mask = inputs.completion_mask.bool()
        out = self.compute(inputs, mask)
        out.advantages = out.advantages.to(mask.device).float().masked_fill(~mask, 0.0)
        return out

    @abstractmethod
    def compute(self, inputs: AdvantageInputs, mask: Tensor) -> AdvantageOutput:
        """Estimator-specific part; ``mask`` is ``completion_mask`` as bool."""


class GRPOAdvantage(AdvantageEstimator):
    """GRPO: one advantage per rollout, ``A_i = (r_i − mean_g) / (std_g + eps)`` over the G rewards of
    its prompt (unbiased sample std), copied onto every valid token.

    Args:
        scale_rewards: What ``r_i − mean_g`` is divided by (TRL's ``scale_rewards``): ``group`` (or
            ``true``), the std of the G rewards of the prompt; ``batch``, the std of all rewards of the
            rollout batch around their mean (Lite PPO, Liu et al. 2025, *Tricks or Traps? A Deep Dive into
            RL for LLM Reasoning*; under DDP the rollouts of this process);
            ``none`` (or ``false``), nothing: Dr. GRPO's ``r_i − mean_g`` (Liu et al. 2025).
        eps: Added to the std.
    """

    name = "grpo"
    min_group_size = 2

    def __init__(self, scale_rewards: bool | ScaleRewards = True, eps: float = 1e-4) -> None:
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        scale_mode(scale_rewards)  # rejects an unknown name here, not at the first step
        self.scale_rewards = scale_rewards
        self.eps = eps

    def compute(self, inputs: AdvantageInputs, mask: Tensor) -> AdvantageOutput:
        r = inputs.rewards.detach().double()[:, None]
        every = torch.ones_like(r, dtype=torch.bool)
        adv = normalize_groups(r, every, inputs.group_size, self.scale_rewards, self.eps)
        return AdvantageOutput(adv.to(mask.device).expand(mask.shape) * mask)


class RLOOAdvantage(AdvantageEstimator):
    """RLOO: ``A_i = r_i − mean of the other G−1 rewards of the group`` (no std scaling), copied onto
    every valid token. Equals ``G/(G−1)·(r_i − mean_g)``.
    """

    name = "rloo"
    min_group_size = 2

    def compute(self, inputs: AdvantageInputs, mask: Tensor) -> AdvantageOutput:
        g = inputs.group_size
        r = inputs.rewards.detach().double().reshape(-1, g)
        adv = r - (r.sum(1, keepdim=True) - r) / (g - 1)
        adv = adv.masked_fill((r.amax(1) == r.amin(1))[:, None], 0.0).reshape(-1, 1)
        return AdvantageOutput(adv.to(mask.device).expand(mask.shape) * mask)


class ReinforcePPAdvantage(AdvantageEstimator):
    """REINFORCE++: token returns, whitened over the whole batch.

    Per valid token ``t`` of rollout ``i`` the reward is ``−kl_coef·kl_{i,t}`` (``kl`` =
    ``per_token_kl``, ``log π_old − log π_ref``), plus the sequence reward ``r_i`` on the last valid
    token. The return is the undiscounted reward-to-go ``R_{i,t} = Σ_{s ≥ t} reward_{i,s}`` (γ = 1), and
    ``A_{i,t} = (R_{i,t} − mean) / (std + eps)`` with mean and unbiased std over every valid token of the
    batch (no grouping: G may be 1). With ``kl_coef = 0`` every token of rollout ``i`` has return ``r_i``,
    i.e. the sequence reward normalised over the batch, each rollout weighted by its length.

    Args:
        kl_coef: Weight of the KL penalty inside the reward (0 disables it; then ``per_token_kl`` is
            not needed). Use the loss's ``beta`` = 0 when the KL is in the reward.
        eps: Added to the std.
    """

    name = "reinforce_pp"

    def __init__(self, kl_coef: float = 0.0, eps: float = 1e-4) -> None:
        if kl_coef < 0 or eps <= 0:
            raise ValueError(f"need kl_coef >= 0 and eps > 0, got kl_coef={kl_coef}, eps={eps}")
        self.kl_coef = kl_coef
        self.eps = eps

    @property
    def needs_kl(self) -> bool:
        """True when the KL penalty is in the reward."""
        return self.kl_coef > 0

    def compute(self, inputs: AdvantageInputs, mask: Tensor) -> AdvantageOutput:
        n, t = mask.shape
        rewards = torch.zeros(n, t, dtype=torch.float64, device=mask.device)
        metrics: dict[str, float] = {}
        if self.needs_kl:
            if inputs.per_token_kl is None:
                raise ValueError("ReinforcePPAdvantage(kl_coef>0) needs AdvantageInputs.per_token_kl")
            kl = inputs.per_token_kl.detach().double().to(mask.device)
            kl_reward = torch.where(mask, -self.kl_coef * kl, 0.0)
            rewards += kl_reward
            metrics["reinforce_pp/kl_reward_mean"] = float(kl_reward.sum() / mask.sum().clamp_min(1))
        positions = torch.arange(t, device=mask.device).expand(n, t)
        last = positions.masked_fill(~mask, -1).amax(1)
        rows = torch.nonzero(last >= 0).squeeze(1)
        rewards[rows, last[rows]] += inputs.rewards.detach().double().to(mask.device)[rows]
        returns = rewards.flip(1).cumsum(1).flip(1) * mask
        metrics["reinforce_pp/return_mean"] = float(returns.sum() / mask.sum().clamp_min(1))
        adv = normalize_groups(returns, mask, n, scale=True, eps=self.eps)
        return AdvantageOutput(adv, metrics, token_rewards=returns.float())
