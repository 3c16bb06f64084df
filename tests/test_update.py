"""The policy update: loss and gradient do not depend on how a mini-batch is cut into micro-batches."""

from __future__ import annotations

import pytest
import torch

from _tiny_hf import tiny_qwen2
from rerec.rl.loss import PolicyLossConfig
from rerec.rl.rollout import Rollouts
from rerec.rl.update import BatchSplit, CompletionLogProbs, UpdateBatch, update_policy

P, T, V = 3, 4, 40


def _rollouts(valid: list[int], group: int = 1) -> Rollouts:
    """Rows with ``valid[i]`` completion tokens (right-padded), each ``group`` rows sharing a prompt."""
    g = torch.Generator().manual_seed(0)
    n = len(valid)
    prompt = torch.randint(5, V, (n // group, P), generator=g).repeat_interleave(group, 0)
    completion = torch.randint(5, V, (n, T), generator=g)
    mask = torch.arange(T)[None, :] < torch.tensor(valid)[:, None]
    completion = completion.masked_fill(~mask, 0)
    attention = torch.cat([torch.ones(n, P, dtype=torch.long), mask.long()], dim=1)
    return Rollouts(torch.cat([prompt, completion], 1), attention, P, completion, mask, ~mask.all(1),
                    [""] * n)


def _gradients(loss_type: str, micro: int, unit: int = 1, valid=(1, 3, 0, 2)) -> tuple[list[torch.Tensor], float]:
    """Gradients after one mini-batch of the whole batch, cut into micro-batches of ``micro`` rows."""
    model = tiny_qwen2(V, seed=0, hidden_size=32, layers=1)
    ro = _rollouts(list(valid), unit)
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])[:, None].expand(-1, T) * ro.completion_mask
    ref = torch.full((len(valid), T), -3.0)
    cfg = PolicyLossConfig(loss_type=loss_type, max_completion_length=T, beta=0.1)  # type: ignore[arg-type]
    grads: list[list[torch.Tensor]] = []
    metrics = update_policy(
        model, UpdateBatch(ro, adv, ro.completion_mask, None, ref), CompletionLogProbs(unit, micro, 1.0), cfg,
        BatchSplit(1, None, micro), backward=lambda loss: loss.backward(),
        zero_grad=lambda: model.zero_grad(set_to_none=True),
        optimizer_step=lambda: grads.append([p.grad.clone() for p in model.parameters()]),
    )
    return grads[0], metrics["loss"]


@pytest.mark.parametrize("loss_type", ["token_mean", "seq_mean", "dr_grpo"])
def test_gradient_is_the_same_for_micro_batches_of_1_2_and_all(loss_type: str) -> None:
    """Rows with 1, 3, 0 and 2 valid tokens: a per-micro-batch aggregate weighted by the micro-batch's
    share of rows (the old aggregation) gives another token_mean and seq_mean gradient for micro 1 and 2
    than for the whole batch, and another loss for all three."""
    whole, loss_whole = _gradients(loss_type, micro=4)
    for micro in (1, 2):
        grads, loss = _gradients(loss_type, micro=micro)
        assert loss == pytest.approx(loss_whole, abs=1e-6)
        for a, b in zip(grads, whole):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_grouped_forward_split_matches_too() -> None:
    """Whole groups of 2 rows sharing one prompt forward: micro 2 (one group) equals the whole batch."""
    whole, _ = _gradients("token_mean", micro=4, unit=2)
    grads, _ = _gradients("token_mean", micro=2, unit=2)
    for a, b in zip(grads, whole):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_token_mean_is_the_mean_over_the_mini_batch_tokens() -> None:
    """Hand value: ratio 1 and no KL, so the loss is −Σ A_t / #tokens = −(1·1 − 2·3 + 0.5·4 + 3·2) / 10."""
    model = tiny_qwen2(V, seed=0, hidden_size=32, layers=1)
    ro = _rollouts([1, 3, 4, 2])
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])[:, None].expand(-1, T) * ro.completion_mask
    metrics = update_policy(
        model, UpdateBatch(ro, adv, ro.completion_mask), CompletionLogProbs(1, 1, 1.0),
        PolicyLossConfig(beta=0.0), BatchSplit(1, None, 1), backward=lambda loss: loss.backward(),
        zero_grad=lambda: None, optimizer_step=lambda: None,
    )
    assert metrics["loss"] == pytest.approx(-(1 - 6 + 2 + 6) / 10, abs=1e-6)
    assert metrics["ratio/mean"] == pytest.approx(1.0)


def test_batch_split_rejects_bad_sizes() -> None:
    for kw in ({"num_iterations": 0}, {"mini_batch_size": 0}, {"micro_batch_size": 0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            BatchSplit(**kw)
