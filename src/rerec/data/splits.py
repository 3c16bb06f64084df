"""Deterministic train/validation/test splits, stratified by query type."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from rerec.data.records import Query


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from any strings/ints, stable across processes (``hash()`` is salted per process)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def split_queries(
    queries: Sequence[Query], test_fraction: float = 0.3, val_fraction: float = 0.15, seed: int = 0
) -> dict[str, list[Query]]:
    """Split into ``train``/``val``/``test``, stratified by query type and independent of input order.

    ``test_fraction`` of each type goes to test; ``val_fraction`` of the remainder to validation (carved
    from train, as the benchmark only defines train/test). Rounding keeps at least one training query of
    every type that has two or more queries.
    """
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError(f"fractions must be in [0, 1): test={test_fraction}, val={val_fraction}")
    by_type: dict[str, list[Query]] = defaultdict(list)
    for q in queries:
        by_type[q.query_type.value].append(q)
    out: dict[str, list[Query]] = {"train": [], "val": [], "test": []}
    for qtype in sorted(by_type):
        group = sorted(by_type[qtype], key=lambda q: q.query_id)
        order = np.random.default_rng(stable_seed(seed, "split", qtype)).permutation(len(group))
        group = [group[i] for i in order]
        n_test = min(int(round(len(group) * test_fraction)), max(len(group) - 1, 0))
        rest = group[n_test:]
        n_val = min(int(round(len(rest) * val_fraction)), max(len(rest) - 1, 0))
        out["test"] += group[:n_test]
        out["val"] += rest[:n_val]
        out["train"] += rest[n_val:]
    return out
