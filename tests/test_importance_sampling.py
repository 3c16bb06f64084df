"""Truncated importance sampling between the rollout engine and the trainer: hand values of the weights
and of the weighted loss, weights of 1 change nothing, and the update applies and logs them."""

from __future__ import annotations

import math

import pytest
import torch

from _tiny_hf import tiny_qwen2
from rerec.rl.importance_sampling import truncated_importance_weights
from rerec.rl.loss import PolicyLossConfig, policy_loss
from rerec.rl.update import BatchSplit, CompletionLogProbs, UpdateBatch, update_policy
from test_update import T, V, _rollouts


def test_weights_hand_computed_truncated_and_one_on_padding() -> None:
    old = torch.log(torch.tensor([[0.5, 0.2, 0.3]]))
    engine = torch.log(torch.tensor([[0.25, 0.4, 1e-9]]))
    mask = torch.tensor([[True, True, False]])
    weights, raw = truncated_importance_weights(old, engine, mask, cap=1.5)
    torch.testing.assert_close(raw, torch.tensor([[2.0, 0.5, 1.0]]))
    torch.testing.assert_close(weights, torch.tensor([[1.5, 0.5, 1.0]]))


def test_weighted_loss_and_gradient_hand_computed() -> None:
    """Ratio 1, advantages (1, −2), weights (1.5, 0.5): per-token losses −1.5 and +1.0, token mean −0.25
    (unweighted: +0.5); d loss / d logp = −A·w / 2 = (−0.75, 0.5)."""
    logps = torch.log(torch.tensor([[0.5, 0.2]])).requires_grad_(True)
    out = policy_loss(logps, logps.detach(), torch.tensor([[1.0, -2.0]]), torch.ones(1, 2, dtype=torch.bool),
                      cfg=PolicyLossConfig(beta=0.0), is_weights=torch.tensor([[1.5, 0.5]]))
    assert out.metrics["loss"] == pytest.approx(-0.25)
    out.loss.backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[-0.75, 0.5]]))


def test_kl_term_is_weighted_too() -> None:
    logps = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    cfg = PolicyLossConfig(beta=1.0, kl_estimator="k3")
    out = policy_loss(logps, logps, torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool), ref, cfg,
                      is_weights=torch.tensor([[2.0]]))
    d = math.log(0.25) - math.log(0.5)
    assert out.metrics["loss"] == pytest.approx(2.0 * (math.exp(d) - d - 1))


def _update(engine_shift: float | None, micro: int = 4, correction: bool = True):
    model = tiny_qwen2(V, seed=0, hidden_size=32, layers=1)
    ro = _rollouts([1, 3, 4, 2])
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])[:, None].expand(-1, T) * ro.completion_mask
    logprobs = CompletionLogProbs(1, micro, 1.0)
    engine = None
    if engine_shift is not None:
        engine = logprobs.all(model, ro) + engine_shift  # the engine's log-probs, shifted
    grads: list[list[torch.Tensor]] = []
    metrics = update_policy(
        model, UpdateBatch(ro, adv, ro.completion_mask, engine_logps=engine), logprobs,
        PolicyLossConfig(beta=0.0, importance_sampling_correction=correction, importance_sampling_cap=2.0),
        BatchSplit(1, None, micro), backward=lambda loss: loss.backward(),
        zero_grad=lambda: model.zero_grad(set_to_none=True),
        optimizer_step=lambda: grads.append([p.grad.clone() for p in model.parameters()]),
    )
    return grads[0], metrics


def test_weights_of_one_when_engine_and_trainer_agree() -> None:
    plain, plain_metrics = _update(None)
    same, metrics = _update(0.0)
    for a, b in zip(plain, same):
        torch.testing.assert_close(a, b)
    assert metrics["is_ratio/mean"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["is_ratio/clipped_frac"] == 0.0
    assert "is_ratio/mean" not in plain_metrics


def test_update_weights_tokens_caps_and_logs_whatever_the_micro_batches() -> None:
    """The engine found every token e^−0.2 as likely → weight e^0.2 (under the cap 2): the gradient is
    e^0.2 times the plain one. Shifted by −1 → ratio e ≈ 2.72, capped at 2 on every token."""
    plain, _ = _update(None)
    scaled, metrics = _update(-0.2)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(b, a * math.exp(0.2), atol=1e-6, rtol=1e-4)
    assert metrics["is_ratio/mean"] == pytest.approx(math.exp(0.2), rel=1e-5)
    capped, metrics = _update(-1.0)
    for a, b in zip(plain, capped):
        torch.testing.assert_close(b, a * 2.0, atol=1e-6, rtol=1e-4)
    assert metrics["is_ratio/max"] == pytest.approx(math.e, rel=1e-5)
    assert metrics["is_ratio/clipped_frac"] == 1.0
    _, split = _update(-1.0, micro=1)
    assert split["is_ratio/mean"] == pytest.approx(metrics["is_ratio/mean"])
    off, _ = _update(-1.0, correction=False)
    for a, b in zip(plain, off):
        torch.testing.assert_close(a, b)


def test_cap_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="importance_sampling_cap"):
        PolicyLossConfig(importance_sampling_cap=0.5)
