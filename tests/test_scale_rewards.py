"""``scale_rewards: group | batch | none`` and ``multi_objective_aggregation`` against hand values."""

from __future__ import annotations

import statistics

import pytest
import torch

from rerec.rl.advantages import AdvantageInputs, GRPOAdvantage
from rerec.rl.raae import RAAEAdvantage
from rerec.rl.reward_aggregation import aggregate_rewards
from test_raae import W, _batch, _equally_wrong, _valid

EPS = 1e-4


def _inputs(rewards: list[float], lengths: list[int], **kw) -> AdvantageInputs:
    t = max(lengths)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return AdvantageInputs(rewards=torch.tensor(rewards), group_size=2, completion_mask=mask, **kw)


def test_grpo_batch_scale_divides_group_centred_rewards_by_the_batch_std() -> None:
    """Rewards (1, 0 | 3, 1): group-centred (0.5, −0.5 | 1, −1); the std of all four rewards around
    their mean 1.25 is sqrt(4.75 / 3) = 1.2583. (The std of the centred values would be 0.913; each
    group's own std 0.707 and 1.414.)"""
    out = GRPOAdvantage(scale_rewards="batch")(_inputs([1.0, 0.0, 3.0, 1.0], [1, 1, 1, 1]))
    std = (4.75 / 3) ** 0.5
    torch.testing.assert_close(out.advantages[:, 0], torch.tensor([0.5, -0.5, 1.0, -1.0]) / (std + EPS))


@pytest.mark.parametrize(("name", "flag"), [("group", True), ("none", False)])
def test_grpo_names_match_the_booleans(name: str, flag: bool) -> None:
    inputs = _inputs([1.0, 0.0, 3.0, 1.0], [2, 1, 1, 2])
    torch.testing.assert_close(GRPOAdvantage(scale_rewards=name)(inputs).advantages,  # type: ignore[arg-type]
                               GRPOAdvantage(scale_rewards=flag)(inputs).advantages)


def test_batch_scale_keeps_a_constant_group_at_zero() -> None:
    out = GRPOAdvantage(scale_rewards="batch")(_inputs([1.0, 0.0, 2.0, 2.0], [1, 1, 1, 1]))
    assert torch.equal(out.advantages[2:], torch.zeros(2, 1))


def test_raae_batch_scale_uses_the_std_of_every_valid_token_reward() -> None:
    """No wrong answer, so every token carries its rollout's reward. Tokens (1, 1 | 0 || 3 | 3, 3):
    group 1's token mean is 2/3, group 2 is constant (0); the std is of all six token rewards."""
    inputs = _inputs([1.0, 0.0, 3.0, 3.0], [2, 1, 1, 2], completion_ids=torch.zeros(4, 2, dtype=torch.long),
                     wrong_titles=[[], [], [], []], tokenizer=object())
    out = RAAEAdvantage(scale_rewards="batch")(inputs)
    std = statistics.stdev([1.0, 1.0, 0.0, 3.0, 3.0, 3.0])
    expected = torch.tensor([[1 / 3, 1 / 3], [-2 / 3, 0.0], [0.0, 0.0], [0.0, 0.0]]) / (std + EPS)
    torch.testing.assert_close(out.advantages, expected)


def test_unknown_scale_is_rejected_at_construction() -> None:
    for make in (GRPOAdvantage, RAAEAdvantage):
        with pytest.raises(ValueError, match="scale_rewards"):
            make(scale_rewards="global")  # type: ignore[arg-type]


def test_normalize_then_sum_normalises_each_component_within_its_group() -> None:
    """G = 2. a = (1, 0 | 2, 2) weight 1, b = (0, 1 | 1, 3) weight 0.5. Per group and component:
    a → (±0.7071 | 0, 0) (constant group: 0), b → (∓0.7071 | ∓0.7071): the sum (0.354, −0.354 | −0.354,
    0.354). The plain weighted sum would be (1, 0.5 | 2.5, 3.5); normalising over the batch instead of
    the group would leave group 2's a non-zero."""
    a, b = torch.tensor([1.0, 0.0, 2.0, 2.0]), torch.tensor([0.0, 1.0, 1.0, 3.0])
    total = a + 0.5 * b
    got = aggregate_rewards(total, {"a": a, "b": b}, {"a": 1.0, "b": 0.5}, 2, "normalize_then_sum")
    half = 0.5 / (0.5**0.5 + EPS)  # (x − mean) / (unbiased std + eps) with deviations ±0.5, std 0.7071
    one = 1.0 / (2**0.5 + EPS)
    torch.testing.assert_close(got, torch.tensor([half - 0.5 * half, -half + 0.5 * half, -0.5 * one, 0.5 * one]))
    assert torch.equal(aggregate_rewards(total, {"a": a, "b": b}, {"a": 1.0, "b": 0.5}, 2, "sum_then_normalize"),
                       total)


def test_normalize_then_sum_unties_rollouts_whose_totals_are_equal() -> None:
    """(a, b) = (1, 0) and (0, 1) with equal weights: the same total, so GRPO gives both 0; normalised
    apart they still sum to 0 — but with weights 1 and 0.5 the first scores higher than the second."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    total = a + 0.5 * b
    assert total[0] == total[1]
    got = aggregate_rewards(total, {"a": a, "b": b}, {"a": 1.0, "b": 0.5}, 2, "normalize_then_sum")
    assert got[0] > 0 > got[1]
    assert torch.equal(GRPOAdvantage()(_inputs(total.tolist(), [1, 1])).advantages, torch.zeros(2, 1))


def test_raae_penalties_apply_to_the_aggregated_reward() -> None:
    """Two equally wrong answers whose components differ (a = 1, 0): normalised apart they get
    r' = ±0.7071; RAAE then lowers the penalised tokens of row 0 to r' − w·|r'| (row 1 has none)."""
    rollouts = _equally_wrong()
    inputs, expected_w = _batch(rollouts, group_size=2)
    a = torch.tensor([1.0, 0.0])
    inputs.rewards = aggregate_rewards(a, {"a": a}, {"a": 1.0}, 2, "normalize_then_sum")
    r = 0.5 / (0.5**0.5 + EPS)
    assert inputs.rewards.tolist() == pytest.approx([r, -r])
    out = RAAEAdvantage(w_penalty=W)(inputs)
    for row, (tokens, weights) in enumerate(zip(_valid(out.token_rewards, inputs.completion_mask), expected_w)):
        base = r if row == 0 else -r
        assert tokens == pytest.approx([base - w * abs(base) for w in weights], abs=1e-6)
    assert any(w > 0 for w in expected_w[0])


def test_unknown_aggregation_is_rejected() -> None:
    with pytest.raises(ValueError, match="multi_objective_aggregation"):
        aggregate_rewards(torch.zeros(2), {"a": torch.zeros(2)}, {"a": 1.0}, 2, "mean")  # type: ignore[arg-type]
