"""The RAAE advantage estimator: segment penalties turned into group-normalised token advantages."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rerec.rl.advantages import (
    AdvantageEstimator,
    AdvantageInputs,
    AdvantageOutput,
    ScaleRewards,
    normalize_groups,
    scale_mode,
)
from rerec.rl.raae.kg_verify import FactChecker
from rerec.rl.raae.segments import SEGMENT_MODES, find_title_mentions, overlapping, split_segments
from rerec.rl.raae.token_spans import TokenSpanError, TokenSpanMapper, TokenSpans

log = logging.getLogger(__name__)


class RAAEAdvantage(AdvantageEstimator):
    """Reasoning-aware advantage estimation (the ReRec paper's RAAE).

    1. Segments: each completion is split into reasoning segments (``segment_by``), the answer line
       excluded (:func:`rerec.rl.raae.segments.split_segments`).
    2. Penalty: when the parsed answer is wrong, every segment that mentions a wrong recommended title
       (case-insensitive, with or without its ``(year)``, ``"X, The"`` ≡ ``"The X"``, literal and
       word-aligned; every wrong title of an open-task answer counts) is penalised. With
       ``kg_verify``, a segment asserting a fact the item–attribute graph contradicts
       (:class:`rerec.rl.raae.kg_verify.FactChecker`) is penalised too, with ``kg_penalty``; a segment with
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
        scale_rewards: Divide by the group's token std (see 4.; ``true`` or ``group``); ``batch``: by the
            std of every valid token reward of the batch around its mean (TRL's ``scale_rewards``
            name); ``false`` or ``none`` keeps ``r_{i,t} − mean``.
        eps: Added to the std.
        penalty_floor: Smallest reward magnitude the penalty is computed from (see 3.); 0 gives the
            paper's rule exactly, with no penalty at ``r = 0``.
        kg_verify: Also penalise graph-contradicted facts, checked by ``AdvantageInputs.fact_checker``
            when given, else by the checker :meth:`setup` builds from the run's data.
        kg_penalty: Penalty weight for a contradicted fact; default ``w_penalty``.
        kg_all_rollouts: Fact-check every rollout, correct and unparsable ones included (default: the
            wrong-answer rollouts only, like the paper's rule).
        baseline: What a token reward is compared with (see 4.): ``tokens``, the mean token reward of the
            group (the paper's formula), or ``rollouts``, the mean rollout reward of the group.
    """

    name = "raae"
    min_group_size = 2

    def __init__(
        self,
        w_penalty: float = 0.3,
        segment_by: Literal["line", "paragraph", "sentence"] = "line",
        scale_rewards: bool | ScaleRewards = True,
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
        scale_mode(scale_rewards)  # rejects an unknown name here, not at the first step
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
        self._fact_checker: FactChecker | None = None

    def setup(self, data: Any) -> None:
        """With ``kg_verify``, build the graph fact checker from ``data.matcher`` and ``data.attributes``."""
        self._fact_checker = FactChecker(data.matcher.match, data.attributes) if self.kg_verify else None

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
        checker = inputs.fact_checker if inputs.fact_checker is not None else self._fact_checker
        if self.kg_verify and checker is None:
            missing.append("fact_checker (kg_verify=True; or call setup(data) first)")
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
            token_w, counts = self._penalties(spans, wrong[i], checker)
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
