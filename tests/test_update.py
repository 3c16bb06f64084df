"""The policy update: loss and gradient do not depend on how a mini-batch is cut into micro-batches; the
non-finite guard skips a mini-batch whose loss or gradient norm is NaN or infinite."""

from __future__ import annotations

import pytest
import torch

from _tiny_hf import tiny_qwen2
from rerec.rl.loss import PolicyLossConfig
from rerec.rl.rollout import Rollouts
from rerec.rl.update import BatchSplit, CompletionLogProbs, UpdateBatch, update_policy
from rerec.rl.update import NonFiniteGuard, NonFiniteTrainingError

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


def _guarded_update(advantages: torch.Tensor, guard: NonFiniteGuard) -> tuple[dict[str, float], list[str]]:
    """A batch of 4 rows in two mini-batches of 2; returns the metrics and the calls made."""
    model = tiny_qwen2(V, seed=0, hidden_size=32, layers=1)
    ro = _rollouts([1, 3, 4, 2])
    calls: list[str] = []
    metrics = update_policy(
        model, UpdateBatch(ro, advantages[:, None].expand(-1, T) * ro.completion_mask, ro.completion_mask),
        CompletionLogProbs(1, 2, 1.0), PolicyLossConfig(beta=0.0), BatchSplit(1, 2, 2),
        backward=lambda loss: loss.backward(),
        zero_grad=lambda: (model.zero_grad(set_to_none=True), calls.append("zero_grad")),
        optimizer_step=lambda: calls.append("step"), guard=guard,
    )
    return metrics, calls


def test_guard_skips_a_mini_batch_with_a_non_finite_loss(caplog: pytest.LogCaptureFixture) -> None:
    """Rows 0-1 and 2-3 are separate mini-batches; a NaN advantage poisons only the first one it is in
    (the order is shuffled, so either), whose optimizer step is replaced by zeroing its gradients."""
    guard = NonFiniteGuard(max_consecutive=3)
    guard.step = 7
    torch.manual_seed(0)
    metrics, calls = _guarded_update(torch.tensor([1.0, float("nan"), 0.5, 3.0]), guard)
    assert calls.count("step") == 1 and metrics["train/skipped_steps"] == 1.0
    assert guard.skipped == 1 and guard.consecutive in (0, 1)
    assert guard.events[0]["step"] == 7 and "loss=nan" in guard.events[0]["non_finite"]
    assert "RL step 7, mini-batch" in caplog.text and "optimizer step skipped" in caplog.text
    clean, calls = _guarded_update(torch.tensor([1.0, -2.0, 0.5, 3.0]), NonFiniteGuard())
    assert calls.count("step") == 2 and clean["train/skipped_steps"] == 0.0 and clean["grad_norm"] > 0


def test_guard_counts_consecutive_skips_and_stops() -> None:
    guard = NonFiniteGuard(max_consecutive=2)
    nan, one = torch.tensor(float("nan")), torch.tensor(1.0)
    assert guard.allows(one, one, 0)
    assert not guard.allows(one, torch.tensor(float("inf")), 0)  # an infinite gradient norm is skipped too
    assert guard.allows(one, one, 0) and guard.consecutive == 0  # a good step ends the run of skips
    assert not guard.allows(nan, nan, 0)
    with pytest.raises(NonFiniteTrainingError, match="2 optimizer steps in a row"):
        guard.allows(nan, one, 1)
    restored = NonFiniteGuard(max_consecutive=2)
    restored.load_state_dict(guard.state_dict())
    assert (restored.skipped, restored.consecutive, restored.events) == (3, 2, guard.events)
    with pytest.raises(ValueError, match="max_consecutive_skips"):
        NonFiniteGuard(max_consecutive=0)
    # with several ranks, one rank's non-finite value makes every rank skip
    assert not NonFiniteGuard(any_rank=lambda bad: True).allows(one, one, 0)
