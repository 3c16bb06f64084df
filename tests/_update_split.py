"""One policy update of a 4-row batch (1, 3, 4 and 2 valid tokens) run with a given micro-batch size:
the check that a loss option does not depend on how a mini-batch is cut into micro-batches."""

from __future__ import annotations

import torch

from _tiny_hf import tiny_qwen2
from rerec.rl.loss import PolicyLossConfig
from rerec.rl.update import BatchSplit, CompletionLogProbs, UpdateBatch, update_policy
from test_update import T, V, _rollouts

VALID = (1, 3, 4, 2)


def split_update(cfg: PolicyLossConfig, micro: int, off_policy: bool = True,
                 engine_shift: torch.Tensor | None = None,
                 loss_rows: list[bool] | None = None) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Gradients and metrics of one mini-batch of the whole batch in micro-batches of ``micro`` rows.

    ``off_policy``: old log-probs are the model's own plus a fixed per-token offset, so ratios differ
    from 1 (and differ between tokens of a row). ``engine_shift``: (4, T) offsets giving engine log-probs.
    ``loss_rows``: which rows enter the loss (default all).
    """
    model = tiny_qwen2(V, seed=0, hidden_size=32, layers=1)
    ro = _rollouts(list(VALID))
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])[:, None].expand(-1, T) * ro.completion_mask
    logprobs = CompletionLogProbs(1, micro, 1.0)
    own = logprobs.all(model, ro)
    offsets = torch.tensor([[0.3, -0.2, 0.1, 0.4], [-0.1, 0.25, -0.3, 0.2],
                            [0.05, -0.15, 0.2, -0.1], [0.2, 0.1, -0.25, 0.3]])
    old = own + offsets if off_policy else None
    engine = None if engine_shift is None else own - engine_shift
    ref = torch.full((len(VALID), T), -3.0)
    loss_mask = ro.completion_mask if loss_rows is None else ro.completion_mask & torch.tensor(loss_rows)[:, None]
    grads: list[list[torch.Tensor]] = []
    metrics = update_policy(
        model, UpdateBatch(ro, adv, loss_mask, old, ref if cfg.beta > 0 else None, engine), logprobs,
        cfg, BatchSplit(1, None, micro), backward=lambda loss: loss.backward(),
        zero_grad=lambda: model.zero_grad(set_to_none=True),
        optimizer_step=lambda: grads.append([p.grad.clone() for p in model.parameters()]),
    )
    return grads[0], metrics


def assert_split_invariant(cfg: PolicyLossConfig, **kw) -> dict[str, float]:
    """Loss, gradient and metrics of micro-batches of 1 and 2 rows equal those of the whole batch."""
    whole, metrics = split_update(cfg, 4, **kw)
    for micro in (1, 2):
        grads, split = split_update(cfg, micro, **kw)
        for a, b in zip(grads, whole):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        for key, value in metrics.items():
            if not key.startswith("grad_norm"):
                assert abs(split[key] - value) <= 1e-5 * max(1.0, abs(value)), (micro, key, split[key], value)
    return metrics
