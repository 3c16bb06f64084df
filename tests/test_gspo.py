"""Sequence-level importance ratio (GSPO, ``loss.importance_sampling_level: sequence``) against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from _update_split import assert_split_invariant, split_update
from rerec.rl.loss import PolicyLossConfig, policy_loss

SEQ = PolicyLossConfig(beta=0.0, importance_sampling_level="sequence")


def _loss(log_ratios: list[float], adv: float, cfg: PolicyLossConfig, pad: int = 1):
    """One row with the given token log-ratios (then ``pad`` padding columns holding junk)."""
    n = len(log_ratios)
    old = torch.tensor([[-1.0] * (n + pad)])
    logps = (old + torch.tensor([[*log_ratios, 7.0]])).requires_grad_(True)  # junk ratio e^7 on padding
    mask = torch.tensor([[True] * n + [False] * pad])
    out = policy_loss(logps, old, torch.full((1, n + pad), adv), mask, cfg=cfg)
    out.loss.backward()
    return out, logps.grad[0]


def test_sequence_ratio_is_the_length_normalised_geometric_mean() -> None:
    """Log-ratios (0.2, −0.4, 0.5): s = exp(0.3 / 3) = e^0.1 (a sum would give e^0.3, outside the clip);
    loss = −s·A = −e^0.1 (token mean of three equal token losses); d loss / d logp_t = −s·A / 3."""
    out, grad = _loss([0.2, -0.4, 0.5], 1.0, SEQ)
    s = math.exp(0.1)
    assert out.loss.item() == pytest.approx(-s, abs=1e-6)
    torch.testing.assert_close(grad, torch.tensor([-s / 3, -s / 3, -s / 3, 0.0]), atol=1e-6, rtol=0)
    assert out.metrics["ratio/mean"] == pytest.approx(s) and out.metrics["clip_ratio/high_mean"] == 0.0


def test_sequence_clip_acts_on_the_whole_sequence() -> None:
    """Log-ratios (0.6, −0.6), A = 1: per token, the first ratio e^0.6 = 1.82 is clipped (no gradient)
    and the second e^−0.6 is not (loss (−1.2 − e^−0.6) / 2, gradient (0, −e^−0.6 / 2)). Per sequence,
    s = 1: nothing is clipped, each token gets −1/2."""
    token, grad = _loss([0.6, -0.6], 1.0, PolicyLossConfig(beta=0.0))
    assert token.loss.item() == pytest.approx((-1.2 - math.exp(-0.6)) / 2, abs=1e-6)
    torch.testing.assert_close(grad, torch.tensor([0.0, -math.exp(-0.6) / 2, 0.0]), atol=1e-6, rtol=0)
    seq, grad = _loss([0.6, -0.6], 1.0, SEQ)
    assert seq.loss.item() == pytest.approx(-1.0, abs=1e-6)
    torch.testing.assert_close(grad, torch.tensor([-0.5, -0.5, 0.0]), atol=1e-6, rtol=0)
    # Log-ratios (0.3, 0.3): s = e^0.3 = 1.35 > 1.2 with A > 0 on both tokens: clipped at 1.2, no gradient.
    clipped, grad = _loss([0.3, 0.3], 1.0, SEQ)
    assert clipped.loss.item() == pytest.approx(-1.2, abs=1e-6)
    assert torch.all(grad == 0) and clipped.metrics["clip_ratio/high_mean"] == 1.0


def test_sequence_ratio_counts_only_loss_tokens_of_each_row() -> None:
    """Two rows, the second with one valid token: its ratio is its own token's, not mixed with row 0."""
    old = torch.zeros(2, 3)
    logps = torch.tensor([[0.1, 0.2, 0.3], [0.4, 9.0, 9.0]]).requires_grad_(True)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    out = policy_loss(logps, old, torch.tensor([[-1.0], [-1.0]]), mask, cfg=SEQ)
    # A = −1: per-token loss = max(s, clip(s)) = s (both inside [0.8, 1.2]); token mean over 4 tokens.
    expected = (3 * math.exp(0.2) + math.exp(0.4)) / 4
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="importance_sampling_level"):
        PolicyLossConfig(importance_sampling_level="group")  # type: ignore[arg-type]


@pytest.mark.parametrize("loss_type", ["token_mean", "seq_mean", "dr_grpo"])
def test_sequence_level_does_not_depend_on_micro_batches(loss_type: str) -> None:
    cfg = PolicyLossConfig(beta=0.1, loss_type=loss_type, max_completion_length=4,  # type: ignore[arg-type]
                           importance_sampling_level="sequence")
    assert_split_invariant(cfg)


def test_sequence_and_token_levels_give_other_gradients_off_policy() -> None:
    token, _ = split_update(PolicyLossConfig(beta=0.0), 4)
    seq, _ = split_update(SEQ, 4)
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(token, seq))
