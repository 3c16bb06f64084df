"""Lightning-free helpers of the curriculum tests (importable cheaply by spawned DDP workers): a task list
and a "rollout NDCG" that is a deterministic function of (query id, global step), so queries get mastered
over time at different speeds."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from torch.utils.data import Dataset

TYPES = ("explicit", "implicit", "misinformed", "interest_based", "demographics")
RATES = (0.25, 0.12, 0.06, 0.0)  # NDCG gained per global step, by query (0.0: never learned)


def make_tasks(n: int) -> tuple[list[str], list[str]]:
    """``n`` query ids and their types, cycling through the five RecBench+ types."""
    return [f"movie/{TYPES[i % 5]}/{i}" for i in range(n)], [TYPES[i % 5] for i in range(n)]


def mastery_ndcg(query_id: str, step: int) -> float:
    """Deterministic "rollout" NDCG of a query at a global step: a per-query rate times the step."""
    rate = RATES[int(hashlib.md5(query_id.encode()).hexdigest(), 16) % len(RATES)]
    return min(1.0, rate * step)


class TaskDataset(Dataset):
    """A list of tasks, each a dict with ``query_id`` and ``query_type`` (like the lead's tasks)."""

    def __init__(self, query_ids: list[str], query_types: list[str]) -> None:
        self.items = [{"query_id": q, "query_type": t} for q, t in zip(query_ids, query_types)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, str]:
        return self.items[index]


def same_state(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...] | None = None) -> bool:
    """Equality of curriculum state dicts where NaN == NaN (never-seen statistics)."""

    def norm(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, (list, tuple)):
            return [norm(v) for v in value]
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return value

    keys = keys or tuple(a)
    return all(norm(a[k]) == norm(b[k]) for k in keys)


def train_loop(ctl: Any, dataset: TaskDataset, epochs: int, batch_size: int) -> dict[str, list[Any]]:
    """What the Lightning fit loop does with the curriculum, without Lightning: per epoch a fresh
    DataLoader over ``ctl.sampler()``, one ``report`` per batch, then ``on_epoch_end``.

    Returns ``served`` (epoch, step, ids) per batch, ``shards`` (epoch, shard, order) per epoch start and
    ``states`` (the controller state after each boundary).
    """
    from torch.utils.data import DataLoader

    record: dict[str, list[Any]] = {"served": [], "shards": [], "states": []}
    step = 0
    for epoch in range(epochs):
        record["shards"].append((ctl.epoch, ctl.shard(), ctl.order))
        for batch in DataLoader(dataset, batch_size=batch_size, sampler=ctl.sampler()):
            names = list(batch["query_id"])
            ctl.report(names, [mastery_ndcg(q, step) for q in names], [0.0] * len(names))
            record["served"].append((epoch, step, names))
            step += 1
        assert ctl.on_epoch_end()
        record["states"].append(ctl.state_dict())
    return record
