"""How the reward components become the one reward per rollout that the advantage estimator normalises.

``sum_then_normalize`` (the default, GRPO's): the weighted sum ``Σ_k w_k · r_k`` of the raw components
(the logged ``reward``). ``normalize_then_sum`` (GDPO, Liu et al. 2026, *Group reward-Decoupled
Normalization Policy Optimization*; TRL's ``multi_objective_aggregation``): each component is first
normalised within the group of G rollouts of its prompt, ``(r_k − mean_g) / (std_g + eps)`` (unbiased std;
a component constant in a group gives 0 there), and the normalised components are summed with the same
weights. A component of small weight and small spread (QAS, PAS) then moves the advantage in proportion to
its weight, not to its raw scale, and two rollouts whose components differ but sum to the same total are no
longer tied. The estimator (RAAE's token penalties included) then works on this reward as it would on the
plain sum; GDPO's batch normalisation afterwards is the estimator's ``scale_rewards: batch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from rerec.rl.advantages import normalize_groups

__all__ = ["MULTI_OBJECTIVE_AGGREGATIONS", "MultiObjectiveAggregation", "aggregate_rewards"]

MultiObjectiveAggregation = Literal["sum_then_normalize", "normalize_then_sum"]
MULTI_OBJECTIVE_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")


def aggregate_rewards(total: Tensor, components: Mapping[str, Tensor], weights: Mapping[str, float],
                      group_size: int, mode: MultiObjectiveAggregation, eps: float = 1e-4) -> Tensor:
    """The (N,) reward the advantage estimator sees.

    Args:
        total: (N,) the weighted sum of the raw components (returned as is by ``sum_then_normalize``).
        components: Raw value of each component, (N,) each.
        weights: Weight of each component, by name.
        group_size: G, the rollouts of one prompt in contiguous rows.
        mode: ``sum_then_normalize`` or ``normalize_then_sum``.
        eps: Added to each group's std.
    """
    if mode == "sum_then_normalize":
        return total
    if mode != "normalize_then_sum":
        raise ValueError(f"multi_objective_aggregation must be one of {MULTI_OBJECTIVE_AGGREGATIONS}, got {mode!r}")
    if not components:
        raise ValueError("multi_objective_aggregation=normalize_then_sum needs at least one reward component")
    out = torch.zeros_like(total, dtype=torch.float64)
    for name, values in components.items():
        column = values.detach().double().to(total.device)[:, None]
        normalised = normalize_groups(column, torch.ones_like(column, dtype=torch.bool), group_size, True, eps)
        out = out + weights[name] * normalised[:, 0]
    return out.to(total.dtype)
