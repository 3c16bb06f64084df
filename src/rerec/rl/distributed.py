"""What the policy module shares between data-parallel ranks (Lightning's DDP, one process per device).

Each rank generates, scores and trains on its own prompts; Lightning averages the gradients. What the
user reads must describe the whole run rather than rank 0's shard: the per-step metrics are reduced over
ranks before they are logged and enter ``summary.json``, and evaluation answers, which Lightning's
distributed sampler spreads over the ranks, are gathered before they are scored. Everything is a no-op
with one process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import torch.distributed as dist

__all__ = ["MAX_METRICS", "SUM_METRICS", "gather_objects", "reduce_metrics", "unique_by"]

T = TypeVar("T")

#: Metrics whose value over ranks is the largest rank's, not the mean.
MAX_METRICS = ("completions/max_length", "memory/peak_cpu_rss_gb", "memory/peak_gpu_allocated_gb",
               "memory/peak_gpu_reserved_gb", "time/generate_s", "time/score_s", "time/reward_s",
               "time/update_s")
#: Metrics that add up over ranks (throughput of the whole run).
SUM_METRICS = ("rollout_tokens", "rollout_tokens_per_s")


def world_size() -> int:
    """Processes in the default group (1 when ``torch.distributed`` is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_objects(obj: T) -> list[T]:
    """``obj`` of every rank, in rank order (``[obj]`` with one process)."""
    n = world_size()
    if n == 1:
        return [obj]
    out: list[Any] = [None] * n
    dist.all_gather_object(out, obj)
    return out


def reduce_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The step metrics of every rank combined into one value each: the mean over the ranks that logged
    the metric, the max for :data:`MAX_METRICS` (a step waits for its slowest rank; memory is per
    device), the sum for :data:`SUM_METRICS`. Non-numbers are kept as this rank's."""
    ranks = gather_objects(metrics)
    if len(ranks) == 1:
        return dict(metrics)
    out: dict[str, float] = dict(metrics)
    keys = {k for m in ranks for k in m}
    for key in keys:
        values = [float(m[key]) for m in ranks if isinstance(m.get(key), (int, float))]
        if not values:
            continue
        if key in MAX_METRICS:
            out[key] = max(values)
        elif key in SUM_METRICS:
            out[key] = math.fsum(values)
        else:
            out[key] = math.fsum(values) / len(values)
    return out


def unique_by(items: Sequence[T], key: str) -> list[T]:
    """``items`` without later repeats of the same ``key`` attribute (Lightning's distributed sampler
    pads the last batch by repeating examples)."""
    seen: set[Any] = set()
    out: list[T] = []
    for item in items:
        k = getattr(item, key)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out
