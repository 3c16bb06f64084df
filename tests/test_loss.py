"""Clipped surrogate, KL estimators and loss aggregation of ``rerec.rl.loss`` against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from rerec.rl.loss import PolicyLossConfig, kl_estimate, kl_k3, masked_mean, policy_loss, zero_variance_groups

NO_KL = dict(beta=0.0)


def _one_token(ratio: float, advantage: float, cfg: PolicyLossConfig) -> tuple[float, float, dict[str, float]]:
    """Loss, d loss / d logp and metrics for a single valid token with the given ratio and advantage."""
    old = torch.tensor([[-1.0]])
    logps = (old + math.log(ratio)).requires_grad_(True)
    out = policy_loss(logps, old, torch.tensor([[advantage]]), torch.tensor([[True]]), cfg=cfg)
    out.loss.backward()
    return out.loss.item(), float(logps.grad[0, 0]), out.metrics


# eps_low = 0.2, eps_high = 0.28 -> clip range [0.8, 1.28].
# surrogate = -min(r*A, clip(r)*A); when unclipped d/dlogp = d(-r*A)/dlogp = -r*A (dr/dlogp = r).
CLIP_CASES = [
    # (ratio, A, loss, grad, low clipped, high clipped)
    # A>0, r=1.5 > 1.28: -min(1.5, 1.28) = -1.28, clipped -> constant, grad 0
    (1.5, 1.0, -1.28, 0.0, 0.0, 1.0),
    # A>0, r=0.5 < 0.8: -min(0.5, 0.8) = -0.5, min picks the UNclipped term -> grad -0.5
    (0.5, 1.0, -0.5, -0.5, 0.0, 0.0),
    # A<0, r=0.5 < 0.8: -min(-0.5, -0.8) = 0.8, clipped -> grad 0
    (0.5, -1.0, 0.8, 0.0, 1.0, 0.0),
    # A<0, r=1.5 > 1.28: -min(-1.5, -1.28) = 1.5, unclipped -> grad -r*A = 1.5
    (1.5, -1.0, 1.5, 1.5, 0.0, 0.0),
    # inside the range, A=2, r=1.1: -2.2, grad -2.2
    (1.1, 2.0, -2.2, -2.2, 0.0, 0.0),
    # inside the range, A=-2, r=0.9: 1.8, grad 1.8
    (0.9, -2.0, 1.8, 1.8, 0.0, 0.0),
    # A=0: no signal, grad 0, nothing counted as clipped
    (1.5, 0.0, 0.0, 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize(("ratio", "adv", "loss", "grad", "low", "high"), CLIP_CASES)
def test_clipped_surrogate_both_sides(ratio: float, adv: float, loss: float, grad: float, low: float, high: float):
    cfg = PolicyLossConfig(epsilon=0.2, epsilon_high=0.28, **NO_KL)
    got_loss, got_grad, m = _one_token(ratio, adv, cfg)
    assert got_loss == pytest.approx(loss, abs=1e-5)
    assert got_grad == pytest.approx(grad, abs=1e-5)
    assert m["clip_ratio/low_mean"] == low
    assert m["clip_ratio/high_mean"] == high
    assert m["clip_ratio/region_mean"] == max(low, high)
    assert m["ratio/mean"] == pytest.approx(ratio, rel=1e-5)


def test_epsilon_high_defaults_to_epsilon_and_clip_higher_widens():
    # r=1.25, A=1. Symmetric (eps_high=None -> 0.2): clipped at 1.2 -> loss -1.2, grad 0.
    sym = PolicyLossConfig(epsilon=0.2, **NO_KL)
    assert sym.clip_high == 0.2
    loss, grad, m = _one_token(1.25, 1.0, sym)
    assert (loss, grad, m["clip_ratio/high_mean"]) == (pytest.approx(-1.2), 0.0, 1.0)
    # Clip-higher eps_high=0.28: 1.25 < 1.28 is inside -> loss -1.25, grad -1.25.
    loss, grad, m = _one_token(1.25, 1.0, PolicyLossConfig(epsilon=0.2, epsilon_high=0.28, **NO_KL))
    assert (loss, grad, m["clip_ratio/high_mean"]) == (pytest.approx(-1.25), pytest.approx(-1.25), 0.0)


def test_clip_metrics_over_a_batch():
    # The first five CLIP_CASES as five one-token rows: one low clip, one high clip out of 5 valid tokens.
    ratios = torch.tensor([1.5, 0.5, 0.5, 1.5, 1.1]).unsqueeze(-1)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 2.0]).unsqueeze(-1)
    old = torch.full((5, 1), -1.0)
    out = policy_loss(
        old + ratios.log(), old, adv, torch.ones(5, 1, dtype=torch.bool), cfg=PolicyLossConfig(0.2, 0.28, **NO_KL)
    )
    assert out.metrics["clip_ratio/low_mean"] == pytest.approx(1 / 5)
    assert out.metrics["clip_ratio/high_mean"] == pytest.approx(1 / 5)
    assert out.metrics["clip_ratio/region_mean"] == pytest.approx(2 / 5)
    # (1.5 + 0.5 + 0.5 + 1.5 + 1.1) / 5 = 1.02; min 0.5, max 1.5
    assert out.metrics["ratio/mean"] == pytest.approx(1.02, rel=1e-5)
    assert out.metrics["ratio/min"] == pytest.approx(0.5, rel=1e-5)
    assert out.metrics["ratio/max"] == pytest.approx(1.5, rel=1e-5)
    # token mean of (-1.28, -0.5, 0.8, 1.5, -2.2) = -1.68 / 5 = -0.336
    assert out.metrics["policy_loss"] == pytest.approx(-0.336, abs=1e-5)
    assert out.loss.item() == pytest.approx(-0.336, abs=1e-5)


def test_kl_estimators_hand_values():
    logp = torch.tensor([-1.0, -2.0, -1.0])
    ref = torch.tensor([-2.0, -1.0, -1.0])
    # d = ref - logp = (-1, 1, 0); k3 = e^d - d - 1 = (e^-1, e - 2, 0) = (0.367879, 0.718282, 0)
    torch.testing.assert_close(kl_k3(logp, ref), torch.tensor([0.367879, 0.718282, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), kl_k3(logp, ref))
    # k1 = logp - ref = (1, -1, 0)
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([1.0, -1.0, 0.0]))
    # low_var_kl: same as k3 inside [-10, 10] ...
    torch.testing.assert_close(kl_estimate(logp, ref, "low_var_kl"), kl_k3(logp, ref))
    # ... and clamped outside: d = 15 -> e^15 - 16 = 3269001.37 -> 10; d = -15 -> e^-15 + 14 = 14.0000003 -> 10
    big = kl_estimate(torch.tensor([0.0, 0.0]), torch.tensor([15.0, -15.0]), "low_var_kl")
    torch.testing.assert_close(big, torch.tensor([10.0, 10.0]))
    assert float(kl_k3(torch.tensor(0.0), torch.tensor(15.0))) == pytest.approx(3269001.37, rel=1e-5)
    with pytest.raises(ValueError, match="unknown estimator"):
        kl_estimate(logp, ref, "k2")  # type: ignore[arg-type]


def test_kl_gradients_finite_and_hand_values():
    # d k3 / d logp = 1 - e^d; at d = -1: 1 - e^-1 = 0.632121
    logp = torch.tensor([-1.0], requires_grad=True)
    kl_k3(logp, torch.tensor([-2.0])).sum().backward()
    assert float(logp.grad[0]) == pytest.approx(0.632121, abs=1e-6)
    # A huge log-ratio (d = 500) overflows exp in plain k3, but low_var_kl stays finite with a zero gradient.
    logp = torch.tensor([-500.0], requires_grad=True)
    value = kl_estimate(logp, torch.tensor([0.0]), "low_var_kl")
    value.sum().backward()
    assert value[0].item() == 10.0
    assert float(logp.grad[0]) == 0.0


def test_kl_penalty_enters_loss_and_metric():
    # One token, ratio 1 (logp = old = -1), A = 1 -> surrogate -1. ref = -2 -> k3 = e^-1 = 0.367879.
    # beta 0.1: loss = -1 + 0.1 * 0.367879 = -0.963212
    logp = torch.tensor([[-1.0]], requires_grad=True)
    cfg = PolicyLossConfig(beta=0.1, kl_estimator="k3")
    one, valid, ref = torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool), torch.tensor([[-2.0]])
    out = policy_loss(logp, logp.detach(), one, valid, ref, cfg)
    assert out.loss.item() == pytest.approx(-0.963212, abs=1e-6)
    assert out.metrics["policy_loss"] == pytest.approx(-1.0)
    assert out.metrics["kl"] == pytest.approx(0.367879, abs=1e-6)
    # grad = -r*A + beta*(1 - e^d) = -1 + 0.1 * 0.632121 = -0.936788
    out.loss.backward()
    assert float(logp.grad[0, 0]) == pytest.approx(-0.936788, abs=1e-6)
    # beta 0 with a reference: KL is still reported but does not enter the loss.
    out0 = policy_loss(logp, logp.detach(), one, valid, ref, PolicyLossConfig(beta=0.0, kl_estimator="k3"))
    assert out0.loss.item() == pytest.approx(-1.0)
    assert out0.metrics["kl"] == pytest.approx(0.367879, abs=1e-6)
    # No reference: kl metric is 0.
    assert policy_loss(logp, logp.detach(), one, valid, cfg=PolicyLossConfig(beta=0.0)).metrics["kl"] == 0.0


def _aggregation_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # ratio 1 everywhere -> per-token surrogate = -A. Row 0: 3 tokens A=(1,2,3); row 1: 1 token A=4;
    # row 2: no valid token. Padding advantages are junk (100, NaN) and must not leak in.
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, float("nan")], [100.0, 100.0, 100.0]])
    logps = torch.full((3, 3), -1.0, requires_grad=True)
    return logps, logps.detach().clone(), adv, mask


@pytest.mark.parametrize(
    ("loss_type", "expected", "grad_row0"),
    [
        # sum of valid -A = -(1+2+3+4) = -10 over 4 valid tokens = -2.5; grad = -A_t / 4
        ("token_mean", -2.5, [-0.25, -0.5, -0.75]),
        # row means (-6/3, -4/1) = (-2, -4); empty row left out -> mean -3; grad row 0 = -A_t / 3 / 2
        ("seq_mean", -3.0, [-1 / 6, -2 / 6, -3 / 6]),
        # -10 / (N * max_completion_length) = -10 / (3 * 5) = -0.666667; grad = -A_t / 15
        ("dr_grpo", -10 / 15, [-1 / 15, -2 / 15, -3 / 15]),
    ],
)
def test_loss_aggregation(loss_type: str, expected: float, grad_row0: list[float]):
    logps, old, adv, mask = _aggregation_batch()
    cfg = PolicyLossConfig(loss_type=loss_type, max_completion_length=5, **NO_KL)  # type: ignore[arg-type]
    out = policy_loss(logps, old, adv, mask, cfg=cfg)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    out.loss.backward()
    torch.testing.assert_close(logps.grad[0], torch.tensor(grad_row0), atol=1e-6, rtol=0)
    # Padding gets no gradient and no per-token loss.
    assert torch.all(logps.grad[~mask] == 0)
    assert torch.all(out.per_token_loss[~mask] == 0)


def test_sequence_level_advantages_broadcast():
    logps, old, adv, mask = _aggregation_batch()
    seq_adv = torch.tensor([1.0, -2.0, 0.0])
    cfg = PolicyLossConfig(**NO_KL)
    a = policy_loss(logps, old, seq_adv, mask, cfg=cfg)
    b = policy_loss(logps, old, seq_adv[:, None].expand(3, 3), mask, cfg=cfg)
    # (-1 * 3 + 2 * 1) / 4 = -0.25
    assert a.loss.item() == pytest.approx(-0.25) == b.loss.item()


def test_nan_safety_with_junk_padding_and_empty_batch():
    nan, inf = float("nan"), float("inf")
    mask = torch.tensor([[True, False], [False, False]])
    logps = torch.tensor([[-1.0, nan], [inf, -inf]], requires_grad=True)
    old = torch.tensor([[-1.0, -inf], [nan, 3.0]])
    ref = torch.tensor([[-1.0, inf], [-inf, nan]])
    adv = torch.tensor([[1.0, nan], [inf, 1.0]])
    for loss_type in ("token_mean", "seq_mean", "dr_grpo"):
        for estimator in ("k3", "low_var_kl", "k1"):
            cfg = PolicyLossConfig(beta=0.1, kl_estimator=estimator, loss_type=loss_type, max_completion_length=2)
            out = policy_loss(logps, old, adv, mask, ref, cfg)
            # one valid token: ratio 1, A 1, kl 0 -> token_mean/seq_mean -1, dr_grpo -1/(2*2)
            assert out.loss.item() == pytest.approx(-0.25 if loss_type == "dr_grpo" else -1.0)
            assert all(math.isfinite(v) for v in out.metrics.values()), out.metrics
            logps.grad = None
            out.loss.backward()
            assert torch.isfinite(logps.grad).all()
    # No valid token at all: loss 0, differentiable, metrics finite.
    empty = torch.zeros(2, 2, dtype=torch.bool)
    for loss_type in ("token_mean", "seq_mean", "dr_grpo"):
        cfg = PolicyLossConfig(beta=0.1, loss_type=loss_type, max_completion_length=2)
        out = policy_loss(logps, old, adv, empty, ref, cfg)
        assert out.loss.item() == 0.0
        logps.grad = None
        out.loss.backward()
        assert torch.all(logps.grad == 0)
        assert out.metrics["ratio/mean"] == 1.0 and out.metrics["clip_ratio/region_mean"] == 0.0


def test_masked_mean():
    nan, inf = float("nan"), float("inf")
    x = torch.tensor([[1.0, 2.0, nan], [inf, 5.0, 6.0], [7.0, 8.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    # (1 + 2 + 5 + 6) / 4 = 3.5; per row (1.5, 5.5, 0 for the empty row)
    assert float(masked_mean(x, mask)) == 3.5
    torch.testing.assert_close(masked_mean(x, mask, dim=-1), torch.tensor([1.5, 5.5, 0.0]))
    assert float(masked_mean(x, torch.zeros_like(mask))) == 0.0


def test_config_and_input_validation():
    with pytest.raises(ValueError, match="max_completion_length"):
        PolicyLossConfig(loss_type="dr_grpo", max_completion_length=0)
    with pytest.raises(ValueError, match="needs max_completion_length"):  # the policy fills it in
        policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool),
                    cfg=PolicyLossConfig(loss_type="dr_grpo", beta=0.0))
    with pytest.raises(ValueError, match="epsilon"):
        PolicyLossConfig(epsilon=1.5)
    with pytest.raises(ValueError, match="loss_type"):
        PolicyLossConfig(loss_type="sum")  # type: ignore[arg-type]
    x = torch.zeros(2, 3)
    m = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="needs ref_logps"):
        policy_loss(x, x, x, m, cfg=PolicyLossConfig(beta=0.01))
    with pytest.raises(ValueError, match="old_logps"):
        policy_loss(x, torch.zeros(2, 2), x, m, cfg=PolicyLossConfig(beta=0.0))
    with pytest.raises(ValueError, match="max_completion_length=2"):
        policy_loss(x, x, x, m, cfg=PolicyLossConfig(beta=0.0, loss_type="dr_grpo", max_completion_length=2))


def test_zero_variance_groups_hand_values() -> None:
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.5, 2.0, 2.0, 2.0 + 1e-7, 0.0, 0.0, 0.001])
    # population stds: 0, 0.408, 4.7e-8, 4.7e-4
    assert zero_variance_groups(rewards, 3, 1e-6).tolist() == [True, False, True, False]
    assert zero_variance_groups(rewards, 3, 1e-3).tolist() == [True, False, True, True]
    assert zero_variance_groups(torch.tensor([1, 1, 0, 2]), 2, 0.0).tolist() == [True, False]
    assert zero_variance_groups(torch.tensor([0.3, 0.7]), 1, 0.0).tolist() == [True, True]


def test_zero_variance_groups_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        zero_variance_groups(torch.zeros(2, 3), 3)
    with pytest.raises(ValueError, match="groups of 4"):
        zero_variance_groups(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="NaN"):
        zero_variance_groups(torch.tensor([0.0, float("nan")]), 2)
    with pytest.raises(ValueError, match="tol"):
        zero_variance_groups(torch.zeros(2), 2, -1.0)


def test_zero_std_options_are_loss_options() -> None:
    assert not PolicyLossConfig().zero_std_filter
    with pytest.raises(ValueError, match="zero_std_tol"):
        PolicyLossConfig(zero_std_tol=-1.0)
