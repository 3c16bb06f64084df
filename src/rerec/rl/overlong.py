"""DAPO's soft overlong punishment as a reward component (``class_path: rerec.rl.overlong.OverlongPenalty``).

A completion that runs into the generation budget is cut off mid-reasoning; its reward then punishes a
reasoning it never finished, noise that DAPO (Yu et al. 2025, *DAPO: An Open-Source LLM Reinforcement
Learning System at Scale*) softens with a length penalty that grows over the last ``overlong_buffer_len``
tokens of the budget ``L_max``. With ``L = overlong_buffer_len`` and ``|y|`` the completion's generated
tokens (EOS included)::

    R(y) = 0                               |y| <= L_max − L
    R(y) = ((L_max − L) − |y|) / L         L_max − L < |y| <= L_max     (from 0 down to −1)
    R(y) = −1                              |y| > L_max

times ``overlong_penalty_factor``. verl names these ``overlong_buffer.len`` and
``overlong_buffer.penalty_factor``; TRL ships the same function as ``get_soft_overlong_punishment``
(``max_completion_len``, ``soft_punish_cache``). Pair it with (or use it instead of)
``loss.mask_truncated_completions``, which drops cut-off completions from the loss instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rerec.rl.reward_components import AnswerBatch, RewardComponent

__all__ = ["OverlongPenalty", "soft_overlong_punishment"]


def soft_overlong_punishment(lengths: Tensor, max_completion_length: int, buffer_len: int) -> Tensor:
    """``R(y)`` above for (N,) completion lengths: 0 before the buffer, linear to −1 at the budget."""
    expected = max_completion_length - buffer_len
    excess = lengths.float() - expected
    return torch.clamp(-excess / buffer_len, min=-1.0, max=0.0)


class OverlongPenalty(RewardComponent):
    """DAPO's soft overlong punishment of completions that reach the last ``overlong_buffer_len`` tokens of
    the generation budget (see the module docstring for the formula).

    Args:
        weight: Weight in the total reward.
        overlong_buffer_len: ``L``: the penalty starts ``L`` tokens before the budget and reaches
            ``−overlong_penalty_factor`` at the budget (DAPO: 4096 of a 20480 budget). 1 ..
            ``max_completion_length``.
        overlong_penalty_factor: Scale of the penalty (verl's ``penalty_factor``; DAPO: 1).
        max_completion_length: ``L_max``; ``null`` takes the budget of the rollouts being scored
            (``generation.max_completion_length``).
    """

    name = "overlong"

    def __init__(self, weight: float = 1.0, overlong_buffer_len: int = 64, overlong_penalty_factor: float = 1.0,
                 max_completion_length: int | None = None) -> None:
        super().__init__(weight)
        if overlong_buffer_len < 1:
            raise ValueError(f"overlong_buffer_len must be >= 1, got {overlong_buffer_len}")
        if overlong_penalty_factor < 0:
            raise ValueError(f"overlong_penalty_factor must be >= 0, got {overlong_penalty_factor}")
        if max_completion_length is not None and max_completion_length < overlong_buffer_len:
            raise ValueError(f"max_completion_length={max_completion_length} < "
                             f"overlong_buffer_len={overlong_buffer_len}")
        self.overlong_buffer_len = overlong_buffer_len
        self.overlong_penalty_factor = overlong_penalty_factor
        self.max_completion_length = max_completion_length

    def __call__(self, batch: AnswerBatch) -> Tensor:
        if batch.completion_lengths is None:
            raise ValueError("reward component 'overlong' needs the completion lengths (RecReward(..., "
                             "completion_lengths=...)); training passes them, reading for evaluation does not")
        budget = self.max_completion_length or batch.max_completion_length
        if budget is None:
            raise ValueError("reward component 'overlong' needs max_completion_length (its own or the rollouts')")
        if budget < self.overlong_buffer_len:
            raise ValueError(f"overlong_buffer_len={self.overlong_buffer_len} exceeds the budget {budget}")
        lengths = batch.completion_lengths.to(batch.device)
        return self.overlong_penalty_factor * soft_overlong_punishment(lengths, budget, self.overlong_buffer_len)
