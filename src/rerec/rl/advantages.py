"""Advantage estimators: ``grpo``, ``rloo``, ``reinforce_pp`` and ``raae`` (DESIGN §1.2, §5).

Every estimator maps one rollout batch (:class:`AdvantageInputs`: ``N = B·G`` rewards, the G rollouts of
a prompt in contiguous rows, a right-padded completion block) to an ``(N, T)`` float advantage tensor
that is 0 wherever ``completion_mask`` is False, plus scalar metrics. They are plain classes whose
constructor arguments are the config knobs, built by LightningCLI from YAML
(``advantage: {class_path: rerec.rl.advantages.RAAEAdvantage, init_args: {w_penalty: 0.3}}``) or by name
with :func:`build_advantage_estimator`.

Statistics: every standard deviation here is the unbiased sample one (Bessel's ``n − 1``, as
``torch.std`` and TRL's GRPO use), computed in float64; a set of fewer than two values has std 0. A group
(or batch) whose values are all equal gets advantage exactly 0, whatever the floating-point mean.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from rerec.rl.kg_verify import FactChecker
from rerec.rl.segments import SEGMENT_MODES, find_title_mentions, overlapping, split_segments
from rerec.rl.token_spans import TokenSpanError, TokenSpanMapper, TokenSpans

log = logging.getLogger(__name__)


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
        fact_checker: Graph fact checker (``raae`` with ``kg_verify``).
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
    fact_checker: FactChecker | None = None

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
    values: Tensor, mask: Tensor, group_size: int, scale: bool, eps: float, centre: Tensor | None = None
) -> Tensor:
    """``(x − mean) / (std + eps)`` (or ``x − mean`` when ``scale`` is False) over the valid entries of
    each group of ``group_size`` consecutive rows; 0 where ``mask`` is False and in groups whose
    deviations are all 0 (constant groups, or with ``centre`` every entry equal to it).

    Args:
        values: (N, T) values (any float dtype; computed in float64).
        mask: (N, T) bool, which entries count and get a result.
        group_size: Rows per group (N for one batch-wide group).
        scale: Divide by the group's unbiased std, ``sqrt(Σ(x − c)² / (n − 1))`` with ``c`` the mean or
            ``centre``.
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
    if scale:
        std = ((dev**2).sum(1) / (count - 1.0).clamp_min(1.0)).sqrt()
        dev = dev / (std[:, None] + eps)
    return dev.masked_fill(constant[:, None], 0.0).reshape(n, t)


class AdvantageEstimator(ABC):
    """Base class: ``estimator(inputs) -> AdvantageOutput``.

    ``needs_texts`` tells the policy module whether completion texts, parsed titles and the tokenizer
    are used (``raae``); ``needs_kl`` whether ``per_token_kl`` must be computed at rollout time.
    """

    name: ClassVar[str]
    needs_texts: ClassVar[bool] = False
    min_group_size: ClassVar[int] = 1

    @property
    def needs_kl(self) -> bool:
        """Whether :attr:`AdvantageInputs.per_token_kl` is required."""
        return False

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
        scale_rewards: Divide by the group std; False gives Dr. GRPO's ``r_i − mean_g``.
        eps: Added to the std.
    """

    name = "grpo"
    min_group_size = 2

    def __init__(self, scale_rewards: bool = True, eps: float = 1e-4) -> None:
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
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


class RAAEAdvantage(AdvantageEstimator):
    """Reasoning-aware advantage estimation (the ReRec paper's RAAE, DESIGN §1.2).

    1. Segments: each completion is split into reasoning segments (``segment_by``), the answer line
       excluded (:func:`rerec.rl.segments.split_segments`).
    2. Penalty: when the parsed answer is wrong, every segment that mentions a wrong recommended title
       (case-insensitive, with or without its ``(year)``, ``"X, The"`` ≡ ``"The X"``, literal and
       word-aligned; every wrong title of an open-task answer counts) is penalised. With
       ``kg_verify``, a segment asserting a fact the item–attribute graph contradicts
       (:class:`rerec.rl.kg_verify.FactChecker`) is penalised too, with ``kg_penalty``; a segment with
       both penalties gets the larger. Correct and unparsable answers keep ``r`` on every token.
    3. Token rewards: tokens overlapping a penalised segment get ``r − w·max(|r|, penalty_floor)``, the
       other valid tokens ``r``. For ``r ≥ penalty_floor`` this is the paper's ``(1 − w)·r``. For a
       negative ``r`` the paper's formula would *raise* the segment's reward (``(1 − w)·r > r``), i.e.
       favour the argument for the wrong item; the rule above lowers it to ``(1 + w)·r`` instead, so a
       penalised segment always ends below the rest of its rollout. ``penalty_floor`` keeps the penalty
       non-zero when ``r`` is 0 (or tiny).
    4. Advantages: ``A_{i,t} = (r_{i,t} − mean) / (std + eps)`` with mean and unbiased std over all
       valid tokens of the G rollouts of the prompt (longer rollouts weigh more); padding gets 0; a
       group whose token rewards are all equal gets 0. Unlike GRPO, a group whose rollouts all earned
       the same reward still gets non-zero advantages when some of its segments are penalised.
       With ``baseline: rollouts`` the mean is that of the G rollout rewards ``r_i`` instead (each
       rollout once, penalties left out), and the std ``sqrt(Σ(r_{i,t} − mean)² / (n − 1))`` over the
       group's valid tokens. The token mean of the paper lies below ``r`` whenever a segment is
       penalised, so in a group of equally wrong answers every unpenalised token, the wrong
       ``\\boxed{}`` answer included, gets a *positive* advantage (``w·max(|r|, penalty_floor)`` times
       the penalised share of the group's tokens; ``sqrt(p / (1 − p))`` with ``scale_rewards``, e.g.
       0.33 at a share ``p`` of 0.1); against the rollouts' mean those tokens get 0 and only the
       penalised segments move, down.

    Metrics: ``raae/penalized_segment_frac`` = penalised segments / all segments of the checked rollouts
    (the wrong-answer rollouts, plus every rollout with ``kg_all_rollouts``); ``raae/penalized_token_frac``
    = penalised tokens / all valid tokens of the batch; ``raae/wrong_answer_frac`` = rollouts with a
    wrong parsed answer / N; ``raae/skipped_rollouts`` = rollouts left unpenalised because their token
    spans could not be reproduced (logged); ``raae/kg_contradictions`` (with ``kg_verify``) = contradicted
    facts found in the batch.

    Args:
        w_penalty: Penalty weight ``w`` in [0, 1] for segments mentioning a wrong title (paper: 0.3).
        segment_by: ``"line"``, ``"paragraph"`` (blank-line separated) or ``"sentence"``.
        scale_rewards: Divide by the group's token std (see 4.); False keeps ``r_{i,t} − mean``.
        eps: Added to the std.
        penalty_floor: Smallest reward magnitude the penalty is computed from (see 3.); 0 gives the
            paper's rule exactly, with no penalty at ``r = 0``.
        kg_verify: Also penalise graph-contradicted facts; needs ``AdvantageInputs.fact_checker``.
        kg_penalty: Penalty weight for a contradicted fact; default ``w_penalty``.
        kg_all_rollouts: Fact-check every rollout, correct and unparsable ones included (default: the
            wrong-answer rollouts only, like the paper's rule).
        baseline: What a token reward is compared with (see 4.): ``tokens``, the mean token reward of the
            group (the paper's formula), or ``rollouts``, the mean rollout reward of the group.
    """

    name = "raae"
    needs_texts = True
    min_group_size = 2

    def __init__(
        self,
        w_penalty: float = 0.3,
        segment_by: Literal["line", "paragraph", "sentence"] = "line",
        scale_rewards: bool = True,
        eps: float = 1e-4,
        penalty_floor: float = 1e-3,
        kg_verify: bool = False,
        kg_penalty: float | None = None,
        kg_all_rollouts: bool = False,
        baseline: Literal["tokens", "rollouts"] = "tokens",
    ) -> None:
        kg_penalty = w_penalty if kg_penalty is None else kg_penalty
        if not (0.0 <= w_penalty <= 1.0 and 0.0 <= kg_penalty <= 1.0):
            raise ValueError(f"w_penalty and kg_penalty must be in [0, 1], got {w_penalty}, {kg_penalty}")
        if segment_by not in SEGMENT_MODES:
            raise ValueError(f"segment_by must be one of {SEGMENT_MODES}, got {segment_by!r}")
        if eps <= 0 or penalty_floor < 0:
            raise ValueError(f"need eps > 0 and penalty_floor >= 0, got eps={eps}, penalty_floor={penalty_floor}")
        if baseline not in ("tokens", "rollouts"):
            raise ValueError(f"baseline must be 'tokens' or 'rollouts', got {baseline!r}")
        self.baseline = baseline
        self.w_penalty = w_penalty
        self.segment_by = segment_by
        self.scale_rewards = scale_rewards
        self.eps = eps
        self.penalty_floor = penalty_floor
        self.kg_verify = kg_verify
        self.kg_penalty = kg_penalty
        self.kg_all_rollouts = kg_all_rollouts
        self._mapper: TokenSpanMapper | None = None

    def _spans(self, tokenizer: Any) -> TokenSpanMapper:
        if self._mapper is None or self._mapper.tokenizer is not tokenizer:
            self._mapper = TokenSpanMapper(tokenizer)
        return self._mapper

    def _penalties(
        self, spans: TokenSpans, wrong_titles: Sequence[str], checker: FactChecker | None
    ) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Penalty weight per token of one rollout, and its (segments, penalised segments, contradictions)."""
        segments = split_segments(spans.text, self.segment_by)
        seg_w = np.zeros(len(segments))
        if wrong_titles:
            mentions = [(s, e) for s, e, _ in find_title_mentions(spans.text, wrong_titles)]
            seg_w[np.array(overlapping(segments, mentions), dtype=bool)] = self.w_penalty
        contradictions = 0
        if self.kg_verify and checker is not None:
            for j, (s, e) in enumerate(segments):
                found = len(checker.contradictions(spans.text[s:e]))
                if found:
                    contradictions += found
                    seg_w[j] = max(seg_w[j], self.kg_penalty)
        token_w = np.zeros(len(spans.starts))
        for j in np.flatnonzero(seg_w > 0):
            hit = spans.overlapping(*segments[j])
            token_w[hit] = np.maximum(token_w[hit], seg_w[j])
        return token_w, (len(segments), int((seg_w > 0).sum()), contradictions)

    def compute(self, inputs: AdvantageInputs, mask: Tensor) -> AdvantageOutput:
        n, t = mask.shape
        missing = [f for f in ("completion_ids", "wrong_titles", "tokenizer") if getattr(inputs, f) is None]
        if self.kg_verify and inputs.fact_checker is None:
            missing.append("fact_checker (kg_verify=True)")
        if missing:
            raise ValueError(f"RAAEAdvantage needs AdvantageInputs.{', '.join(missing)}")
        recommended = inputs.recommended_titles
        parsable = [recommended is None or recommended[i] is not None for i in range(n)]
        wrong = [list(inputs.wrong_titles[i]) if parsable[i] else [] for i in range(n)]
        checked = [bool(wrong[i]) or (self.kg_verify and self.kg_all_rollouts) for i in range(n)]

        mask_cpu = mask.cpu()
        valid_np = mask_cpu.numpy()
        ids_np = inputs.completion_ids.detach().cpu().numpy()
        weights_np = np.zeros((n, t))
        n_segments = n_penalized = n_contradictions = skipped = 0
        for i in (i for i in range(n) if checked[i]):
            cols = np.flatnonzero(valid_np[i])
            if cols.size == 0:
                continue
            text = inputs.completion_texts[i] if inputs.completion_texts is not None else None
            try:
                spans = self._spans(inputs.tokenizer)(ids_np[i, cols].tolist(), text=text)
            except TokenSpanError as err:
                skipped += 1
                log.warning("RAAE: rollout %d left unpenalised: %s", i, err)
                continue
            token_w, counts = self._penalties(spans, wrong[i], inputs.fact_checker)
            weights_np[i, cols] = token_w
            n_segments += counts[0]
            n_penalized += counts[1]
            n_contradictions += counts[2]

        weights = torch.from_numpy(weights_np)
        r = inputs.rewards.detach().double().cpu()
        magnitude = r.abs().clamp_min(self.penalty_floor)
        token_rewards = torch.where(mask_cpu, r[:, None] - weights * magnitude[:, None], 0.0)
        centre = r.reshape(-1, inputs.group_size).mean(1) if self.baseline == "rollouts" else None
        adv = normalize_groups(token_rewards, mask_cpu, inputs.group_size, self.scale_rewards, self.eps, centre)
        valid = int(mask_cpu.sum())
        metrics = {
            "raae/penalized_segment_frac": n_penalized / n_segments if n_segments else 0.0,
            "raae/penalized_token_frac": int(((weights > 0) & mask_cpu).sum()) / valid if valid else 0.0,
            "raae/wrong_answer_frac": sum(bool(w) for w in wrong) / n,
            "raae/skipped_rollouts": float(skipped),
        }
        if self.kg_verify:
            metrics["raae/kg_contradictions"] = float(n_contradictions)
        return AdvantageOutput(adv, metrics, token_rewards=token_rewards.float().to(mask.device))


ADVANTAGE_ESTIMATORS: dict[str, type[AdvantageEstimator]] = {
    "grpo": GRPOAdvantage,
    "rloo": RLOOAdvantage,
    "reinforce_pp": ReinforcePPAdvantage,
    "raae": RAAEAdvantage,
}


def build_advantage_estimator(name: str, **kwargs: Any) -> AdvantageEstimator:
    """The estimator called ``name`` (a key of :data:`ADVANTAGE_ESTIMATORS`) built with ``kwargs``."""
    try:
        cls = ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        choices = sorted(ADVANTAGE_ESTIMATORS)
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of {choices}") from None
    return cls(**kwargs)
