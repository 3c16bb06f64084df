"""``loss.entropy_coef`` (entropy bonus) and ``loss.top_entropy_quantile`` (train the high-entropy tokens
of each completion) against hand values; both independent of the micro-batch split."""

from __future__ import annotations

import pytest
import torch

from _update_split import assert_split_invariant, split_update
from rerec.rl.logprobs import selective_log_softmax_and_entropy
from rerec.rl.loss import PolicyLossConfig, high_entropy_mask, policy_loss

MASK = torch.tensor([[True, True, True, False], [True, True, False, False]])
ENTROPY = torch.tensor([[0.1, 0.5, 0.3, 0.9], [2.0, 1.0, 7.0, 7.0]])  # padding holds junk


def test_high_entropy_mask_takes_each_completions_own_quantile() -> None:
    """ρ = 0.5: row 0's median of (0.1, 0.5, 0.3) is 0.3 → keeps 0.5 and 0.3; row 1's (2, 1) is 1.5 →
    keeps 2. A quantile over the whole batch (0.5) would keep (0.5 | 2, 1); one counting row 0's padding
    (median 0.4) would keep only 0.5."""
    kept = high_entropy_mask(ENTROPY, MASK, 0.5)
    assert kept.tolist() == [[False, True, True, False], [True, False, False, False]]
    assert high_entropy_mask(ENTROPY, MASK, 0.0).tolist() == [[False, True, False, False], [True, False, False, False]]
    assert torch.equal(high_entropy_mask(ENTROPY, MASK, 1.0), MASK)
    empty = high_entropy_mask(ENTROPY, torch.zeros_like(MASK), 0.5)
    assert not empty.any()


def test_top_entropy_loss_keeps_the_normaliser_of_all_tokens() -> None:
    """Ratio 1, A = (1, 2, 3 | 4, 5), ρ = 0.5 keeps A = 2, 3 and 4: token_mean = −(2 + 3 + 4) / 5 = −1.8
    (dividing by the 3 kept tokens would give −3); d loss / d logp = −A/5 on kept tokens, 0 elsewhere."""
    logps = torch.zeros(2, 4, requires_grad=True)
    adv = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 0.0, 0.0]])
    cfg = PolicyLossConfig(beta=0.0, top_entropy_quantile=0.5)
    out = policy_loss(logps, logps.detach(), adv, MASK, cfg=cfg, entropy=ENTROPY)
    assert out.loss.item() == pytest.approx(-1.8)
    out.loss.backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[0.0, -0.4, -0.6, 0.0], [-0.8, 0.0, 0.0, 0.0]]))
    assert out.metrics["top_entropy/kept_frac"] == pytest.approx(3 / 5)


def test_top_entropy_leaves_the_kl_term_on_every_token() -> None:
    logps = torch.zeros(2, 4)
    cfg = PolicyLossConfig(beta=1.0, kl_estimator="k1", top_entropy_quantile=0.5)
    out = policy_loss(logps, logps, torch.zeros(2, 4), MASK, torch.full((2, 4), -1.0), cfg, entropy=ENTROPY)
    assert out.loss.item() == pytest.approx(1.0)  # k1 = logp − ref = 1 on all five tokens


@pytest.mark.parametrize(("loss_type", "bonus", "grad"), [
    # token_mean: mean entropy over the 5 loss tokens; d/dH = −c / 5
    ("token_mean", (0.1 + 0.5 + 0.3 + 2.0 + 1.0) / 5, [[-0.02] * 3 + [0.0], [-0.02] * 2 + [0.0] * 2]),
    # seq_mean: mean of the row means (0.3, 1.5) = 0.9; d/dH = −c / (|y_i| · 2)
    ("seq_mean", 0.9, [[-0.1 / 6] * 3 + [0.0], [-0.025] * 2 + [0.0] * 2]),
])
def test_entropy_bonus_is_aggregated_like_the_loss(loss_type: str, bonus: float, grad: list[list[float]]) -> None:
    entropy = ENTROPY.clone().requires_grad_(True)
    logps = torch.zeros(2, 4)
    cfg = PolicyLossConfig(beta=0.0, entropy_coef=0.1, loss_type=loss_type)  # type: ignore[arg-type]
    out = policy_loss(logps, logps, torch.zeros(2, 4), MASK, cfg=cfg, entropy=entropy)
    assert out.loss.item() == pytest.approx(-0.1 * bonus)
    out.loss.backward()
    torch.testing.assert_close(entropy.grad, torch.tensor(grad))


def test_differentiable_entropy_matches_the_logged_one_and_torchs_gradient() -> None:
    logits = torch.tensor([[[1.0, -0.5, 2.0], [0.0, 0.3, -1.0]]], requires_grad=True)
    labels = torch.tensor([[2, 1]])
    _, plain = selective_log_softmax_and_entropy(logits.detach(), labels)
    _, entropy = selective_log_softmax_and_entropy(logits, labels, entropy_grad=True)
    torch.testing.assert_close(entropy.detach(), plain)
    entropy.sum().backward()
    ref = logits.detach().clone().requires_grad_(True)
    torch.distributions.Categorical(logits=ref).entropy().sum().backward()
    torch.testing.assert_close(logits.grad, ref.grad)


def test_entropy_bonus_reaches_the_model_in_the_update() -> None:
    """Zero advantages and no KL: only the entropy bonus gives a gradient (none if the entropy were
    detached), and it scales with the coefficient."""
    zero = PolicyLossConfig(beta=0.0)
    plain, _ = split_update(zero, 4, off_policy=False)
    assert all(torch.count_nonzero(g) > 0 for g in plain[-2:])  # the advantages alone move the model
    small, _ = split_update(PolicyLossConfig(beta=0.0, entropy_coef=0.1), 4, off_policy=False)
    large, _ = split_update(PolicyLossConfig(beta=0.0, entropy_coef=0.2), 4, off_policy=False)
    for p, s, l in zip(plain, small, large):
        torch.testing.assert_close(l - p, 2 * (s - p), atol=1e-6, rtol=1e-4)
    assert any(not torch.allclose(s, p) for s, p in zip(small, plain))


@pytest.mark.parametrize("cfg", [
    PolicyLossConfig(beta=0.1, entropy_coef=0.05),
    PolicyLossConfig(beta=0.1, entropy_coef=0.05, loss_type="seq_mean"),
    PolicyLossConfig(beta=0.1, top_entropy_quantile=0.5),
    PolicyLossConfig(beta=0.0, top_entropy_quantile=0.2, entropy_coef=0.05, loss_type="dr_grpo",
                     max_completion_length=4),
], ids=["bonus-token", "bonus-seq", "top-entropy", "both-dr_grpo"])
def test_entropy_knobs_do_not_depend_on_micro_batches(cfg: PolicyLossConfig) -> None:
    metrics = assert_split_invariant(cfg)
    if cfg.top_entropy_quantile < 1:
        assert 0 < metrics["top_entropy/kept_frac"] < 1


def test_entropy_options_are_validated_and_need_entropy() -> None:
    with pytest.raises(ValueError, match="entropy_coef"):
        PolicyLossConfig(entropy_coef=-0.1)
    with pytest.raises(ValueError, match="top_entropy_quantile"):
        PolicyLossConfig(top_entropy_quantile=1.5)
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool),
                    cfg=PolicyLossConfig(beta=0.0, entropy_coef=0.1))


@pytest.mark.parametrize("chunk", [None, 2])
def test_entropy_gradient_of_the_shared_prompt_path_equals_the_plain_one(chunk: int | None) -> None:
    from _tiny_hf import tiny_qwen2
    from rerec.rl.logprobs import completion_logprobs, grouped_completion_logprobs
    from test_update import V, _rollouts

    ro = _rollouts([1, 3, 4, 2], group=2)
    grads = []
    for grouped in (False, True):
        model = tiny_qwen2(V, seed=0, hidden_size=32, layers=1)
        if grouped:
            _, entropy = grouped_completion_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_length, 2,
                                                     with_entropy=True, logits_chunk=chunk, entropy_grad=True)
        else:
            _, entropy = completion_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_length,
                                             with_entropy=True, entropy_grad=True)
        entropy[ro.completion_mask].sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
