"""``loss.mask_truncated_completions`` and DAPO's soft overlong punishment (``OverlongPenalty``)."""

from __future__ import annotations

import pytest
import torch

from _update_split import assert_split_invariant
from rerec.rl.loss import PolicyLossConfig, loss_token_mask, policy_loss
from rerec.rl.overlong import OverlongPenalty, soft_overlong_punishment
from rerec.rl.reward_components import AnswerBatch, NDCGReward
from rerec.rl.rewards import RecReward, RewardConfig
from test_rewards import ITEMS, _task


def test_soft_overlong_punishment_hand_values() -> None:
    """Budget 10, buffer 4: free up to 6 tokens, then −1/4 per token down to −1 at 10 (and beyond)."""
    lengths = torch.tensor([3, 6, 7, 8, 10, 12])
    got = soft_overlong_punishment(lengths, 10, 4)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0]))


def _batch(lengths: list[int], budget: int | None = 10) -> AnswerBatch:
    n = len(lengths)
    return AnswerBatch([""] * n, [None] * n, [None] * n, [[]] * n, [[]] * n, [False] * n, 1,  # type: ignore[list-item]
                       completion_lengths=torch.tensor(lengths), max_completion_length=budget)


def test_component_scales_by_the_factor_and_reads_the_rollout_budget() -> None:
    got = OverlongPenalty(overlong_buffer_len=4, overlong_penalty_factor=0.5)(_batch([6, 8, 10]))
    torch.testing.assert_close(got, torch.tensor([0.0, -0.25, -0.5]))
    own = OverlongPenalty(overlong_buffer_len=2, max_completion_length=8)(_batch([6, 7, 8]))
    torch.testing.assert_close(own, torch.tensor([0.0, -0.5, -1.0]))


def test_component_refuses_to_guess_without_lengths_or_budget() -> None:
    with pytest.raises(ValueError, match="completion lengths"):
        OverlongPenalty()(AnswerBatch([""], [None], [None], [[]], [[]], [False], 1))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_completion_length"):
        OverlongPenalty(overlong_buffer_len=4)(_batch([3], budget=None))
    with pytest.raises(ValueError, match="overlong_buffer_len"):
        OverlongPenalty(overlong_buffer_len=0)


def test_reward_passes_the_lengths_to_the_component() -> None:
    from rerec.data.matching import TitleMatcher

    reward = RecReward(RewardConfig(), ITEMS, TitleMatcher(ITEMS.values()),
                       [NDCGReward(), OverlongPenalty(weight=0.5, overlong_buffer_len=4)])
    out = reward(["\\boxed{Silent River, The (1975)}", "no answer"], [_task((1,))] * 2,
                 completion_lengths=torch.tensor([5, 10]), max_completion_length=10)
    torch.testing.assert_close(out.components["overlong"], torch.tensor([0.0, -1.0]))
    torch.testing.assert_close(out.total, torch.tensor([1.0, -0.5 - 0.5]))


def test_loss_token_mask_drops_truncated_rows_and_filtered_groups() -> None:
    completion = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]], dtype=torch.bool)
    truncated = torch.tensor([True, False, False, True])
    zero_groups = torch.tensor([False, True])
    plain = loss_token_mask(completion, truncated, zero_groups, 2, PolicyLossConfig())
    assert torch.equal(plain, completion)
    masked = loss_token_mask(completion, truncated, zero_groups, 2, PolicyLossConfig(mask_truncated_completions=True))
    assert masked.tolist() == [[False, False], [True, False], [True, True], [False, False]]
    both = loss_token_mask(completion, truncated, zero_groups, 2,
                           PolicyLossConfig(mask_truncated_completions=True, zero_std_filter=True))
    assert both.tolist() == [[False, False], [True, False], [False, False], [False, False]]


def test_masked_truncated_rows_leave_the_normaliser_too() -> None:
    """Rows of 2 (truncated) and 1 valid tokens, A = 1 and 3, ratio 1: token_mean over the one kept
    token is −3 (keeping the truncated row's tokens in the denominator would give −1)."""
    completion = torch.tensor([[True, True], [True, False]])
    mask = loss_token_mask(completion, torch.tensor([True, False]), torch.tensor([False]), 2,
                           PolicyLossConfig(mask_truncated_completions=True))
    logps = torch.zeros(2, 2)
    out = policy_loss(logps, logps, torch.tensor([[1.0], [3.0]]), mask, cfg=PolicyLossConfig(beta=0.0))
    assert out.loss.item() == pytest.approx(-3.0)


def test_masked_rows_do_not_depend_on_micro_batches() -> None:
    assert_split_invariant(PolicyLossConfig(beta=0.1), loss_rows=[True, False, True, False])
