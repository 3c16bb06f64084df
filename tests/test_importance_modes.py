"""Rollout-mismatch correction modes (``loss.importance_sampling_mode``): token or sequence level, truncate
or mask, against hand values; the masked share is logged; the update does not depend on the split."""

from __future__ import annotations

import math

import pytest
import torch

from _update_split import assert_split_invariant, split_update
from rerec.rl.importance_sampling import importance_weights
from rerec.rl.loss import PolicyLossConfig

# Token ratios π_old / π_engine: row 0 (2, 0.5, 2), row 1 (4, 1, padding).
OLD = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.1, 0.3]]))
ENGINE = torch.log(torch.tensor([[0.25, 0.4, 0.15], [0.1, 0.1, 1e-9]]))
MASK = torch.tensor([[True, True, True], [True, True, False]])


@pytest.mark.parametrize(("mode", "cap", "weights", "raw"), [
    ("token_truncate", 1.5, [[1.5, 0.5, 1.5], [1.5, 1.0, 1.0]], [[2.0, 0.5, 2.0], [4.0, 1.0, 1.0]]),
    ("token_mask", 3.0, [[2.0, 0.5, 2.0], [0.0, 1.0, 1.0]], [[2.0, 0.5, 2.0], [4.0, 1.0, 1.0]]),
    # a completion's ratio is the product of its token ratios: 2 and 4 (a geometric mean would be 1.26, 2)
    ("sequence_truncate", 1.5, [[1.5, 1.5, 1.5], [1.5, 1.5, 1.0]], [[2.0, 2.0, 2.0], [4.0, 4.0, 1.0]]),
    ("sequence_mask", 3.0, [[2.0, 2.0, 2.0], [0.0, 0.0, 1.0]], [[2.0, 2.0, 2.0], [4.0, 4.0, 1.0]]),
])
def test_weights_of_each_mode(mode: str, cap: float, weights: list, raw: list) -> None:
    got, got_raw = importance_weights(OLD, ENGINE, MASK, cap, mode)
    torch.testing.assert_close(got_raw, torch.tensor(raw))
    torch.testing.assert_close(got, torch.tensor(weights))


def test_token_truncate_is_todays_correction() -> None:
    from rerec.rl.importance_sampling import truncated_importance_weights

    for a, b in zip(importance_weights(OLD, ENGINE, MASK, 1.5), truncated_importance_weights(OLD, ENGINE, MASK, 1.5)):
        torch.testing.assert_close(a, b)


# Engine log-probs below the trainer's by these amounts (4 rows of 1, 3, 4 and 2 tokens); cap 2 = e^0.69.
SHIFT = torch.tensor([[1.5, 0.0, 0.0, 0.0], [0.2, 0.3, 0.4, 0.0], [0.1, -0.1, 0.2, 0.1], [0.9, 0.5, 0.0, 0.0]])


def _cfg(mode: str) -> PolicyLossConfig:
    return PolicyLossConfig(beta=0.0, importance_sampling_cap=2.0, importance_sampling_mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "masked"), [
    ("token_mask", 0.2),       # tokens e^1.5 (row 0) and e^0.9 (row 3) of 10
    ("sequence_mask", 0.6),    # rows 0, 1, 3 (sums 1.5, 0.9, 1.4) = 1 + 3 + 2 of 10 tokens; row 2 (0.3) kept
])
def test_update_logs_the_masked_share(mode: str, masked: float) -> None:
    _, metrics = split_update(_cfg(mode), 4, off_policy=False, engine_shift=SHIFT)
    assert metrics["is_ratio/masked_frac"] == pytest.approx(masked)
    _, truncate = split_update(_cfg(mode.replace("mask", "truncate")), 4, off_policy=False, engine_shift=SHIFT)
    assert "is_ratio/masked_frac" not in truncate
    assert truncate["is_ratio/clipped_frac"] == pytest.approx(masked)


def test_sequence_mask_keeps_only_row_2_weighted_by_its_ratio() -> None:
    """Only row 2 (4 tokens) survives, weighted e^0.3, and the normaliser still counts all 10 tokens:
    the gradient is e^0.3 · 4/10 times that of a loss on row 2 alone."""
    masked, _ = split_update(_cfg("sequence_mask"), 4, off_policy=False, engine_shift=SHIFT)
    alone, _ = split_update(PolicyLossConfig(beta=0.0), 4, off_policy=False, loss_rows=[False, False, True, False])
    for a, b in zip(masked, alone):
        torch.testing.assert_close(a, b * math.exp(0.3) * 0.4, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
def test_modes_do_not_depend_on_micro_batches(mode: str) -> None:
    cfg = PolicyLossConfig(beta=0.1, importance_sampling_cap=2.0, importance_sampling_mode=mode)  # type: ignore[arg-type]
    assert_split_invariant(cfg, engine_shift=SHIFT)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="importance_sampling_mode"):
        PolicyLossConfig(importance_sampling_mode="sequence")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="importance_sampling_mode"):
        importance_weights(OLD, ENGINE, MASK, 2.0, "clip")
