"""grpo, rloo, reinforce_pp and the shared group normalisation against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from rerec.rl.advantages import (
    AdvantageEstimator,
    AdvantageInputs,
    GRPOAdvantage,
    ReinforcePPAdvantage,
    RLOOAdvantage,
    normalize_groups,
)
from rerec.rl.raae import RAAEAdvantage

EPS = 1e-4


def _inputs(rewards: list[float], group_size: int, mask: list[list[int]], **kw) -> AdvantageInputs:
    return AdvantageInputs(
        rewards=torch.tensor(rewards), group_size=group_size, completion_mask=torch.tensor(mask, dtype=torch.bool), **kw
    )


def test_grpo_uses_unbiased_std_and_masks_padding() -> None:
    # Group 1: rewards 1, 0, 0.5 -> mean 0.5, sample std sqrt((0.25+0.25+0)/2) = 0.5
    # (the population std would be 0.408 and give ±1.2247). Group 2 is constant -> 0.
    mask = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 0]]
    out = GRPOAdvantage()(_inputs([1.0, 0.0, 0.5, 0.2, 0.2, 0.2], 3, mask))
    a = 0.5 / (0.5 + EPS)
    expected = torch.tensor([[a, a, 0], [-a, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    torch.testing.assert_close(out.advantages, expected)
    assert out.advantages.dtype == torch.float32


def test_grpo_without_scaling_is_mean_centred() -> None:
    out = GRPOAdvantage(scale_rewards=False)(_inputs([1.0, 0.0, 0.5], 3, [[1, 1], [1, 1], [1, 0]]))
    torch.testing.assert_close(out.advantages, torch.tensor([[0.5, 0.5], [-0.5, -0.5], [0.0, 0.0]]))


def test_grpo_constant_group_is_exactly_zero() -> None:
    # 0.1 three times in float64: the mean is 0.10000000000000002, the advantage must still be exactly 0.
    inputs = _inputs([0.1, 0.1, 0.1], 3, [[1], [1], [1]])
    inputs.rewards = inputs.rewards.double().fill_(0.1)
    assert (inputs.rewards.sum() / 3).item() != 0.1
    out = GRPOAdvantage()(inputs)
    assert torch.equal(out.advantages, torch.zeros(3, 1))


def test_rloo_leave_one_out_baseline() -> None:
    # G=4, rewards 1, 0, 0, 0.5: A_0 = 1 - 0.5/3, A_1 = A_2 = 0 - 1.5/3, A_3 = 0.5 - 1/3.
    out = RLOOAdvantage()(_inputs([1.0, 0.0, 0.0, 0.5], 4, [[1, 1], [1, 0], [1, 1], [1, 1]]))
    a0, a1, a3 = 1 - 0.5 / 3, -0.5, 0.5 - 1 / 3
    torch.testing.assert_close(out.advantages, torch.tensor([[a0, a0], [a1, 0.0], [a1, a1], [a3, a3]]))
    constant = RLOOAdvantage()(_inputs([0.3, 0.3], 2, [[1], [1]]))
    assert torch.equal(constant.advantages, torch.zeros(2, 1))


def test_reinforce_pp_with_kl_in_reward() -> None:
    # kl_coef 0.1; row 0 (r=1): token rewards [-0.02, -0.04 + 1] -> returns [0.94, 0.96];
    # row 1 (r=0): [-0.01, 0, -0.03] -> returns [-0.04, -0.03, -0.03]. The padded KL (NaN) is ignored.
    mask = [[1, 1, 0], [1, 1, 1]]
    kl = torch.tensor([[0.2, 0.4, float("nan")], [0.1, 0.0, 0.3]])
    out = ReinforcePPAdvantage(kl_coef=0.1)(_inputs([1.0, 0.0], 1, mask, per_token_kl=kl))
    returns = [0.94, 0.96, -0.04, -0.03, -0.03]
    mean = 1.8 / 5
    std = math.sqrt((0.58**2 + 0.60**2 + 0.40**2 + 0.39**2 + 0.39**2) / 4)
    a = [(x - mean) / (std + EPS) for x in returns]
    torch.testing.assert_close(out.advantages, torch.tensor([[a[0], a[1], 0.0], [a[2], a[3], a[4]]]))
    torch.testing.assert_close(out.token_rewards, torch.tensor([[0.94, 0.96, 0.0], [-0.04, -0.03, -0.03]]))
    assert out.metrics["reinforce_pp/kl_reward_mean"] == pytest.approx(-(0.02 + 0.04 + 0.01 + 0.0 + 0.03) / 5)


def test_reinforce_pp_without_kl_is_batch_normalised_sequence_reward() -> None:
    # Returns [1, 1 | 0, 0, 0]: mean 0.4, sample std sqrt((2*0.36 + 3*0.16)/4) = sqrt(0.3).
    est = ReinforcePPAdvantage()
    assert not est.needs_kl
    out = est(_inputs([1.0, 0.0], 2, [[1, 1, 0], [1, 1, 1]]))
    hi, lo = 0.6 / (math.sqrt(0.3) + EPS), -0.4 / (math.sqrt(0.3) + EPS)
    torch.testing.assert_close(out.advantages, torch.tensor([[hi, hi, 0.0], [lo, lo, lo]]))


def test_reinforce_pp_needs_kl_when_coefficient_set() -> None:
    est = ReinforcePPAdvantage(kl_coef=0.05)
    assert est.needs_kl
    with pytest.raises(ValueError, match="per_token_kl"):
        est(_inputs([1.0, 0.0], 1, [[1], [1]]))


def test_normalize_groups_token_level_by_hand() -> None:
    # One group of two rows, valid values 1, 2 | 4 (the padded 100 is ignored):
    # mean 7/3, sample std sqrt(((4/3)^2 + (1/3)^2 + (5/3)^2) / 2) = sqrt(7/3).
    values = torch.tensor([[1.0, 2.0], [4.0, 100.0]])
    mask = torch.tensor([[True, True], [True, False]])
    out = normalize_groups(values, mask, group_size=2, scale=True, eps=0.0)
    s = math.sqrt(7 / 3)
    expected = torch.tensor([[(1 - 7 / 3) / s, (2 - 7 / 3) / s], [(4 - 7 / 3) / s, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def test_normalize_groups_with_a_centre_by_hand() -> None:
    # Same values, centre 2: deviations -1, 0 | 2; sample std about the centre sqrt((1 + 0 + 4) / 2).
    values = torch.tensor([[1.0, 2.0], [4.0, 100.0]])
    mask = torch.tensor([[True, True], [True, False]])
    out = normalize_groups(values, mask, group_size=2, scale=True, eps=0.0, centre=torch.tensor([2.0]))
    s = math.sqrt(5 / 2)
    torch.testing.assert_close(out, torch.tensor([[-1 / s, 0.0], [2 / s, 0.0]], dtype=torch.float64))
    # A group whose entries are all equal moves when they are off the centre, and is 0 when on it.
    same = torch.full((2, 2), 0.5)
    off = normalize_groups(same, mask, group_size=2, scale=False, eps=1e-4, centre=torch.tensor([0.4]))
    torch.testing.assert_close(off, torch.tensor([[0.1, 0.1], [0.1, 0.0]], dtype=torch.float64))
    on = normalize_groups(same, mask, group_size=2, scale=True, eps=1e-4, centre=torch.tensor([0.5]))
    assert torch.equal(on, torch.zeros_like(on))
    with pytest.raises(ValueError, match="centre must have shape"):
        normalize_groups(values, mask, group_size=1, scale=True, eps=0.0, centre=torch.tensor([2.0]))


def test_input_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="group_size"):
        GRPOAdvantage()(_inputs([1.0, 0.0, 1.0], 2, [[1], [1], [1]]))
    with pytest.raises(ValueError, match="completion_mask"):
        GRPOAdvantage()(_inputs([1.0, 0.0], 2, [[1]]))
    with pytest.raises(ValueError, match="per_token_kl"):
        ReinforcePPAdvantage(kl_coef=0.1)(_inputs([1.0, 0.0], 2, [[1], [1]], per_token_kl=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="group_size >= 2"):
        RLOOAdvantage()(_inputs([1.0], 1, [[1]]))


def test_built_from_a_lightning_style_config() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(AdvantageEstimator, "advantage")
    cfg = parser.parse_object(
        {"advantage": {"class_path": "rerec.rl.raae.RAAEAdvantage",
                       "init_args": {"w_penalty": 0.2, "segment_by": "paragraph"}}}
    )
    est = parser.instantiate(cfg).advantage
    assert isinstance(est, RAAEAdvantage) and est.w_penalty == 0.2 and est.segment_by == "paragraph"
    assert est.kg_penalty == 0.2  # defaults to w_penalty
