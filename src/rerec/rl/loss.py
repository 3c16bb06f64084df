"""Clipped policy-gradient loss with a KL penalty to the reference policy, and its aggregation.

Per valid completion token ``t`` of row ``i`` (``ratio = exp(logp - old_logp)``, or with
``importance_sampling_level: sequence`` the row's geometric-mean ratio; advantage ``A``)::

    surrogate = -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A)
    loss_t    = surrogate + beta * KL_t          (KL_t from ``kl_estimator``, 0 when beta == 0)

then aggregated over the (mini-)batch by ``loss_type``. Names follow TRL's GRPO where a concept matches.
Every masked reduction uses ``torch.where`` before any ``exp`` so padding positions can never put
``inf``/``NaN`` into the loss or its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "PolicyLossConfig", "PolicyLossOutput", "high_entropy_mask", "kl_estimate", "kl_k3", "loss_normalizer",
    "loss_token_mask", "masked_mean", "policy_loss", "zero_variance_groups",
]

KLEstimator = Literal["k3", "low_var_kl", "k1"]
LossType = Literal["token_mean", "seq_mean", "dr_grpo"]
ImportanceSamplingLevel = Literal["token", "sequence"]
ImportanceSamplingMode = Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]

# Bound on log(ref/pi) before exp in low_var_kl: leaves every value of the [-10, 10]-clamped k3 unchanged
# (|log-ratio| > 20 gives k3 > 10 either way) but keeps exp finite, so the clamp's zero gradient never
# meets an inf (0 * inf = NaN).
_LOG_RATIO_BOUND = 20.0
_LOW_VAR_KL_BOUND = 10.0


@dataclass
class PolicyLossConfig:
    """Clipped surrogate, KL penalty and loss aggregation of the policy update.

    Args:
        epsilon: lower clip range: the ratio is clipped below at ``1 - epsilon``.
        epsilon_high: upper clip range (``1 + epsilon_high``); ``None`` uses ``epsilon`` (symmetric PPO
            clip). A larger value is DAPO's "clip-higher" (e.g. 0.28).
        beta: coefficient of the per-token KL penalty to the reference policy. ``0`` disables it (the
            reference forward pass can then be skipped).
        kl_estimator: per-token KL estimator, with ``d = ref_logp - logp``: ``"k3"`` = ``exp(d) - d - 1``
            (unbiased, always >= 0); ``"low_var_kl"`` = k3 clamped to ``[-10, 10]`` (the log-ratio is
            bounded at ±20 first, which changes no value but keeps gradients finite); ``"k1"`` = ``-d``.
        loss_type: aggregation of per-token losses over the batch. ``"token_mean"``: sum over all valid
            tokens / number of valid tokens. ``"seq_mean"``: mean over sequences (with at least one valid
            token) of each sequence's token mean. ``"dr_grpo"``: sum over valid tokens /
            (N * max_completion_length), a constant normaliser (Dr. GRPO).
        max_completion_length: the constant normaliser of ``"dr_grpo"``; ``null`` takes the rollout
            budget (``generation.max_completion_length``). Ignored by the other loss types.
        zero_std_filter: DAPO-style filter: rollout groups whose reward std is at most ``zero_std_tol``
            give no gradient signal and are left out of the loss (``frac_reward_zero_std`` counts them
            either way).
        zero_std_tol: Tolerance of ``zero_std_filter`` on the population std of a group's rewards.
        mask_truncated_completions: Leave completions that hit ``max_completion_length`` without an EOS
            out of the loss (and out of its normaliser), as if they had not been sampled (TRL's name; DAPO,
            Yu et al. 2025): their reward judges a reasoning that was cut off. They still count in their
            group's advantage statistics. See also the ``rerec.rl.overlong.OverlongPenalty`` reward.
        importance_sampling_correction: When the rollout engine reports its own sampling log-probs (the
            vLLM engine does), weight each token's loss by ``min(π_old(t) / π_engine(t), cap)``, the
            truncated importance ratio between the trainer's and the engine's probability of the sampled
            token (TRL's ``vllm_importance_sampling_correction``): two implementations of the same weights
            never give exactly the same probabilities. Ignored with an engine that reports none (HF).
        importance_sampling_cap: The truncation ``cap`` of those weights (>= 1).
        importance_sampling_mode: How those weights are formed (TRL's ``vllm_importance_sampling_mode``,
            see :mod:`~rerec.rl.importance_sampling`): ``token_truncate`` (the weights above),
            ``token_mask`` (a token whose ratio is above ``cap`` gets weight 0 instead), and
            ``sequence_truncate`` / ``sequence_mask`` (every token of a completion weighted by the
            completion's ratio, the product of its token ratios, capped or zeroed above ``cap``). The
            ``*_mask`` modes log ``is_ratio/masked_frac``, the share of loss tokens dropped.
        importance_sampling_level: What the clipped ratio is taken of (TRL's and verl's name;
            ``sequence`` is GSPO, Zheng et al. 2025). ``"token"``: each token's own ratio
            ``π(t) / π_old(t)``. ``"sequence"``: one ratio per completion, the length-normalised geometric
            mean of its token ratios ``s = exp(mean_t log(π(t) / π_old(t)))`` over its loss tokens, clipped
            per sequence and shared by all of its tokens (the gradient reaches each token as ``s / |y|``).
            The per-token losses are then aggregated by ``loss_type`` (``seq_mean`` gives GSPO's objective
            exactly; ``token_mean`` weighs sequences by length). GSPO clips far tighter than token-level
            GRPO (the paper uses ``epsilon`` 3e-4 and ``epsilon_high`` 4e-4). The ratio only moves off
            policy (``num_iterations`` > 1 or several mini-batches); on-policy it is 1 at either level,
            but the gradient per token is then ``1 / |y|`` of the token level's.
        entropy_coef: Weight of an entropy bonus: ``loss −= entropy_coef · agg(H)``, with ``H_t`` the
            entropy of the policy's (temperature-scaled) next-token distribution at each loss token and
            ``agg`` the same ``loss_type`` aggregation as the surrogate (verl's ``entropy_coeff``; with
            ``token_mean`` it is TRL's ``entropy_coef``, the mean per-token entropy). Keeps the policy from
            collapsing onto near-deterministic answers. The entropy is then differentiated, which keeps
            each micro-batch's softmax for the backward (more memory). ``0`` = off.
        top_entropy_quantile: ρ of *Beyond the 80/20 Rule* (Wang et al. 2025; TRL's name): the
            surrogate is kept only on the tokens whose entropy is at or above the ``1 − ρ`` quantile
            (linear interpolation) of the entropies of **their own completion's** loss tokens (TRL takes
            the quantile over all tokens of a forward batch; per completion, the mask does not depend on
            how the batch is cut into micro-batches). The other tokens still count in the ``loss_type``
            normaliser and keep their KL term and entropy bonus. ``1.0`` keeps every token (off); ``0.0``
            keeps each completion's highest-entropy token; the paper uses 0.2.
    """

    epsilon: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.01
    kl_estimator: KLEstimator = "low_var_kl"
    loss_type: LossType = "token_mean"
    max_completion_length: int | None = None
    zero_std_filter: bool = False
    zero_std_tol: float = 1e-6
    mask_truncated_completions: bool = False
    importance_sampling_correction: bool = True
    importance_sampling_cap: float = 2.0
    importance_sampling_mode: ImportanceSamplingMode = "token_truncate"
    importance_sampling_level: ImportanceSamplingLevel = "token"
    entropy_coef: float = 0.0
    top_entropy_quantile: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"PolicyLossConfig.epsilon={self.epsilon} must be in [0, 1)")
        if self.epsilon_high is not None and self.epsilon_high < 0.0:
            raise ValueError(f"PolicyLossConfig.epsilon_high={self.epsilon_high} must be >= 0")
        if self.beta < 0.0:
            raise ValueError(f"PolicyLossConfig.beta={self.beta} must be >= 0")
        if self.kl_estimator not in ("k3", "low_var_kl", "k1"):
            raise ValueError(f"PolicyLossConfig.kl_estimator={self.kl_estimator!r}: use k3, low_var_kl or k1")
        if self.loss_type not in ("token_mean", "seq_mean", "dr_grpo"):
            raise ValueError(f"PolicyLossConfig.loss_type={self.loss_type!r}: use token_mean, seq_mean or dr_grpo")
        if self.max_completion_length is not None and self.max_completion_length < 1:
            raise ValueError(f"PolicyLossConfig.max_completion_length must be >= 1, got {self.max_completion_length}")
        if not self.zero_std_tol >= 0.0:
            raise ValueError(f"PolicyLossConfig.zero_std_tol must be >= 0, got {self.zero_std_tol}")
        if not self.importance_sampling_cap >= 1.0:
            raise ValueError(f"PolicyLossConfig.importance_sampling_cap must be >= 1, got {self.importance_sampling_cap}")
        if self.importance_sampling_mode not in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
            raise ValueError(f"PolicyLossConfig.importance_sampling_mode={self.importance_sampling_mode!r}: use "
                             "token_truncate, token_mask, sequence_truncate or sequence_mask")
        if self.importance_sampling_level not in ("token", "sequence"):
            raise ValueError(f"PolicyLossConfig.importance_sampling_level={self.importance_sampling_level!r}: "
                             "use token or sequence")
        if not self.entropy_coef >= 0.0:
            raise ValueError(f"PolicyLossConfig.entropy_coef must be >= 0, got {self.entropy_coef}")
        if not 0.0 <= self.top_entropy_quantile <= 1.0:
            raise ValueError(f"PolicyLossConfig.top_entropy_quantile must be in [0, 1], got {self.top_entropy_quantile}")

    @property
    def needs_entropy(self) -> bool:
        """Whether :func:`policy_loss` reads the per-token entropy (entropy bonus or top-entropy mask)."""
        return self.entropy_coef > 0 or self.top_entropy_quantile < 1.0

    @property
    def clip_high(self) -> float:
        """The upper clip range actually used (``epsilon_high`` or, when ``None``, ``epsilon``)."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


@dataclass
class PolicyLossOutput:
    """Result of :func:`policy_loss`.

    Args:
        loss: scalar, differentiable w.r.t. ``logps``: aggregated surrogate + ``beta`` * aggregated KL.
        metrics: floats for logging: ``loss``, ``policy_loss`` (aggregated surrogate alone), ``kl``
            (token mean of the KL estimate over valid tokens; 0 without reference), ``clip_ratio/low_mean``,
            ``clip_ratio/high_mean``, ``clip_ratio/region_mean`` (share of valid tokens where that clip is
            active), ``ratio/mean``, ``ratio/min``, ``ratio/max`` (over valid tokens; 1 when there are none).
        per_token_loss: ``(N, T)`` per-token loss without gradient, 0 on padding.
    """

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    per_token_loss: Tensor | None = None


def zero_variance_groups(rewards: torch.Tensor, group_size: int, tol: float = 1e-6) -> torch.Tensor:
    """Which rollout groups have (nearly) constant rewards and so give zero GRPO gradient.

    Args:
        rewards: ``(N,)`` total rewards, ``N = num_groups · group_size``, the rollouts of one prompt
            contiguous (architecture conventions).
        group_size: G, rollouts per prompt.
        tol: A group is flagged when the population std (``correction=0``) of its rewards is ``<= tol``.

    Returns:
        Bool tensor ``(num_groups,)`` on ``rewards``' device, True for a zero-variance group.
    """
    if rewards.dim() != 1:
        raise ValueError(f"zero_variance_groups: rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"zero_variance_groups: {rewards.numel()} rewards do not split into groups of {group_size}"
        )
    if tol < 0:
        raise ValueError(f"zero_variance_groups: tol must be >= 0, got {tol}")
    values = rewards if rewards.is_floating_point() else rewards.float()
    if not bool(torch.isfinite(values).all()):
        raise ValueError("zero_variance_groups: rewards contain NaN or inf")
    return values.reshape(-1, group_size).std(dim=1, correction=0) <= tol


def high_entropy_mask(entropy: Tensor, mask: Tensor, top_quantile: float) -> Tensor:
    """``(N, T)`` bool: the loss tokens of each row whose entropy is at or above the ``1 − top_quantile``
    quantile (linear interpolation) of that row's loss-token entropies; all of ``mask`` when
    ``top_quantile`` is 1."""
    mask = mask.bool()
    if top_quantile >= 1.0:
        return mask
    values = torch.where(mask, entropy.detach().float(), torch.full((), float("nan"), device=entropy.device))
    threshold = torch.nanquantile(values, 1.0 - top_quantile, dim=-1, keepdim=True)  # NaN on empty rows
    return mask & (entropy.detach().float() >= threshold)


def loss_token_mask(completion_mask: Tensor, truncated: Tensor, zero_groups: Tensor, group_size: int,
                    cfg: PolicyLossConfig) -> Tensor:
    """``(N, T)`` the tokens that enter the loss: the completion tokens, less the groups of
    ``zero_groups`` with ``zero_std_filter`` and the ``truncated`` rows with ``mask_truncated_completions``.

    Args:
        completion_mask: ``(N, T)`` real completion tokens.
        truncated: ``(N,)`` rows that hit the budget without an EOS.
        zero_groups: ``(N // group_size,)`` zero-variance groups (:func:`zero_variance_groups`).
        group_size: G.
        cfg: the loss settings.
    """
    mask = completion_mask.bool()
    if cfg.zero_std_filter:
        mask = mask & ~zero_groups.to(mask.device).repeat_interleave(group_size).unsqueeze(1)
    if cfg.mask_truncated_completions:
        mask = mask & ~truncated.to(mask.device).bool().unsqueeze(1)
    return mask


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is True; 0 where there are none (never NaN).

    Args:
        x: values; entries outside ``mask`` may be anything, ``inf``/``NaN`` included.
        mask: bool (or 0/1) tensor broadcastable to ``x``.
        dim: reduce over this dimension only; ``None`` reduces over everything to a scalar.

    Returns:
        the masked mean (scalar, or ``x`` reduced over ``dim``).
    """
    mask = mask.bool()
    values = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if dim is None:
        return values.sum() / mask.sum().clamp(min=1)
    return values.sum(dim) / mask.sum(dim).clamp(min=1)


def kl_k3(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """Schulman's k3 estimator of ``KL(pi || ref)`` per token: ``exp(d) - d - 1`` with ``d = ref - logp``.

    Args:
        logps: log-probs of the sampled tokens under the current policy.
        ref_logps: log-probs of the same tokens under the reference policy (no gradient needed).

    Returns:
        the per-token estimate, ``>= 0``, same shape as ``logps``.
    """
    d = ref_logps - logps
    return torch.exp(d) - d - 1.0


def kl_estimate(logps: Tensor, ref_logps: Tensor, estimator: KLEstimator = "low_var_kl") -> Tensor:
    """Per-token estimate of ``KL(pi || ref)`` from samples of ``pi``.

    Args:
        logps: log-probs of the sampled tokens under the current policy.
        ref_logps: log-probs of the same tokens under the reference policy.
        estimator: ``"k3"``, ``"low_var_kl"`` (k3 clamped to [-10, 10]) or ``"k1"`` (``logp - ref``); see
            :class:`PolicyLossConfig`.

    Returns:
        the per-token estimate, same shape as ``logps``.
    """
    if estimator == "k3":
        return kl_k3(logps, ref_logps)
    if estimator == "low_var_kl":
        d = (ref_logps - logps).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
        return (torch.exp(d) - d - 1.0).clamp(-_LOW_VAR_KL_BOUND, _LOW_VAR_KL_BOUND)
    if estimator == "k1":
        return logps - ref_logps
    raise ValueError(f"kl_estimate: unknown estimator {estimator!r}; use k3, low_var_kl or k1")


def loss_normalizer(completion_mask: Tensor, cfg: PolicyLossConfig) -> float:
    """The denominator of ``cfg.loss_type`` over a whole (mini-)batch.

    Gradient accumulation splits a mini-batch into micro-batches; each micro-batch's loss is its sum
    divided by the mini-batch's normaliser, so the micro-batch losses add up to the mini-batch loss
    whatever the split (a per-micro-batch token mean would weight a token by its micro-batch's size).

    Returns:
        ``token_mean``: number of valid tokens; ``seq_mean``: number of rows with a valid token;
        ``dr_grpo``: rows × ``max_completion_length``. At least 1.
    """
    mask = completion_mask.bool()
    if cfg.loss_type == "token_mean":
        return float(max(int(mask.sum()), 1))
    if cfg.loss_type == "seq_mean":
        return float(max(int(mask.any(-1).sum()), 1))
    if cfg.max_completion_length is None:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length (the policy sets its rollout budget)")
    return float(mask.shape[0] * cfg.max_completion_length)


def _aggregate(per_token: Tensor, mask: Tensor, cfg: PolicyLossConfig, normalizer: float) -> Tensor:
    """Reduce ``(N, T)`` per-token values (already 0 outside ``mask``) to this batch's share of the
    ``cfg.loss_type`` aggregate whose denominator is ``normalizer`` (:func:`loss_normalizer`)."""
    if cfg.loss_type == "seq_mean":
        # Each sequence's token mean; rows without a valid token add 0 and are not counted in the normaliser.
        return (per_token.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / normalizer
    return per_token.sum() / normalizer


def policy_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    completion_mask: Tensor,
    ref_logps: Tensor | None = None,
    cfg: PolicyLossConfig | None = None,
    normalizer: float | None = None,
    is_weights: Tensor | None = None,
    entropy: Tensor | None = None,
) -> PolicyLossOutput:
    """Clipped surrogate + ``beta`` * KL, aggregated over valid completion tokens.

    ``old_logps`` and ``ref_logps`` are treated as constants (detached).

    Args:
        logps: ``(N, T)`` log-probs of the completion tokens under the policy being trained.
        old_logps: ``(N, T)`` log-probs under the policy that sampled them (equal to ``logps`` values on
            the first pass, giving ratio 1).
        advantages: ``(N, T)`` per-token advantages, or ``(N,)`` / ``(N, 1)`` per-sequence advantages.
        completion_mask: ``(N, T)`` True on real completion tokens (including EOS).
        ref_logps: ``(N, T)`` log-probs under the reference policy; required when ``cfg.beta > 0``.
        cfg: loss settings; ``None`` uses the :class:`PolicyLossConfig` defaults.
        normalizer: denominator of the aggregation when these rows are one micro-batch of a larger
            mini-batch (:func:`loss_normalizer` of the mini-batch's mask); ``None``: these rows' own.
        is_weights: ``(N, T)`` importance weights of the tokens (constants; see
            :func:`~rerec.rl.importance_sampling.importance_weights`): each token's loss,
            surrogate and KL, is multiplied by its weight before aggregation. ``None``: all 1.
        entropy: ``(N, T)`` per-token entropy of the policy; required when ``cfg.needs_entropy`` (with
            gradient when ``cfg.entropy_coef > 0``).

    Returns:
        :class:`PolicyLossOutput` with the scalar loss and float metrics.
    """
    cfg = cfg or PolicyLossConfig()
    if logps.dim() != 2:
        raise ValueError(f"policy_loss: logps must be (N, T), got {tuple(logps.shape)}")
    shape = logps.shape
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.expand(shape) if advantages.shape[-1] == 1 else advantages
    for name, tensor in (("old_logps", old_logps), ("advantages", advantages), ("completion_mask", completion_mask)):
        if tensor.shape != shape:
            raise ValueError(f"policy_loss: {name} has shape {tuple(tensor.shape)}, logps has {tuple(shape)}")
    if is_weights is not None and is_weights.shape != shape:
        raise ValueError(f"policy_loss: is_weights has shape {tuple(is_weights.shape)}, logps has {tuple(shape)}")
    if ref_logps is not None and ref_logps.shape != shape:
        raise ValueError(f"policy_loss: ref_logps has shape {tuple(ref_logps.shape)}, logps has {tuple(shape)}")
    if cfg.needs_entropy and (entropy is None or entropy.shape != shape):
        raise ValueError(f"policy_loss: entropy_coef / top_entropy_quantile need entropy of shape {tuple(shape)}")
    if cfg.beta > 0 and ref_logps is None:
        raise ValueError(f"policy_loss: beta={cfg.beta} > 0 needs ref_logps (or set beta=0)")
    if cfg.loss_type == "dr_grpo" and cfg.max_completion_length is not None and shape[1] > cfg.max_completion_length:
        raise ValueError(
            f"policy_loss: completions have {shape[1]} columns > max_completion_length="
            f"{cfg.max_completion_length}, the dr_grpo normaliser would be wrong"
        )

    mask = completion_mask.bool()
    if normalizer is None:
        normalizer = loss_normalizer(mask, cfg)
    zero = torch.zeros((), dtype=torch.float32, device=logps.device)
    logps = logps.float()
    adv = torch.where(mask, advantages.detach().float(), zero)
    # Mask the log-ratio before exp: padding becomes ratio 1, never inf.
    log_ratio = torch.where(mask, logps - old_logps.detach().float(), zero)
    if cfg.importance_sampling_level == "sequence":
        # GSPO: the mean log-ratio of each row's loss tokens, i.e. the log of the geometric mean ratio.
        seq_log_ratio = log_ratio.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
        log_ratio = torch.where(mask, seq_log_ratio.expand(shape), zero)
    ratio = torch.exp(log_ratio)
    low, high = 1.0 - cfg.epsilon, 1.0 + cfg.clip_high
    clipped = torch.clamp(ratio, low, high)
    surrogate = -torch.minimum(ratio * adv, clipped * adv)
    weights = None if is_weights is None else torch.where(mask, is_weights.detach().float(), zero)
    if weights is not None:
        surrogate = surrogate * weights
    kept = high_entropy_mask(entropy, mask, cfg.top_entropy_quantile) if entropy is not None else mask
    surrogate = torch.where(kept, surrogate, zero)

    pg_loss = _aggregate(surrogate, mask, cfg, normalizer)
    loss = pg_loss
    per_token = surrogate
    if cfg.entropy_coef > 0:
        ent = torch.where(mask, entropy.float(), zero)
        loss = loss - cfg.entropy_coef * _aggregate(ent, mask, cfg, normalizer)
        per_token = per_token - cfg.entropy_coef * ent
    kl_mean = zero
    if ref_logps is not None:
        # Zero both sides on padding so the estimate there is exactly 0 whatever the inputs hold.
        kl = kl_estimate(
            torch.where(mask, logps, zero), torch.where(mask, ref_logps.detach().float(), zero), cfg.kl_estimator
        )
        kl = torch.where(mask, kl, zero)
        kl_mean = masked_mean(kl.detach(), mask)
        if weights is not None:
            kl = kl * weights
        if cfg.beta > 0:
            # The aggregations are linear, so agg(surrogate + beta*kl) = agg(surrogate) + beta*agg(kl).
            loss = loss + cfg.beta * _aggregate(kl, mask, cfg, normalizer)
            per_token = per_token + cfg.beta * kl

    with torch.no_grad():
        is_low = mask & (adv < 0) & (ratio < low)
        is_high = mask & (adv > 0) & (ratio > high)
        n_valid = int(mask.sum())
        valid_ratio = ratio[mask]
        metrics = {
            "loss": float(loss.detach()),
            "policy_loss": float(pg_loss.detach()),
            "kl": float(kl_mean),
            "clip_ratio/low_mean": float(masked_mean(is_low.float(), mask)),
            "clip_ratio/high_mean": float(masked_mean(is_high.float(), mask)),
            "clip_ratio/region_mean": float(masked_mean((is_low | is_high).float(), mask)),
            "ratio/mean": float(valid_ratio.mean()) if n_valid else 1.0,
            "ratio/min": float(valid_ratio.min()) if n_valid else 1.0,
            "ratio/max": float(valid_ratio.max()) if n_valid else 1.0,
        }
        if cfg.top_entropy_quantile < 1.0:
            metrics["top_entropy/kept_frac"] = float(masked_mean(kept.float(), mask))
    return PolicyLossOutput(loss=loss, metrics=metrics, per_token_loss=per_token.detach())
