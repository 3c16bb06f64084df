"""Deterministic, stratified train/val/test splits (``rerec.data.splits``)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from rerec.data.records import Query, QueryType
from rerec.data.splits import split_queries, stable_seed

SIZES = {
    QueryType.EXPLICIT: 40,
    QueryType.IMPLICIT: 17,
    QueryType.MISINFORMED: 7,
    QueryType.INTEREST_BASED: 2,
    QueryType.DEMOGRAPHICS: 1,
}


def _queries() -> list[Query]:
    return [
        Query(query_id=f"movie/{t.value}/{i}", domain="movie", query_type=t, text=f"q {i}")
        for t, n in SIZES.items()
        for i in range(n)
    ]


def _ids(splits: dict[str, list[Query]]) -> dict[str, list[str]]:
    return {k: [q.query_id for q in v] for k, v in splits.items()}


def test_stable_seed_is_process_independent() -> None:
    code = "from rerec.data.splits import stable_seed; print(stable_seed(3, 'split', 'explicit'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == stable_seed(3, "split", "explicit")
    assert 0 <= stable_seed("a") < 2**32
    assert stable_seed(1, "a") != stable_seed(1, "b")
    assert stable_seed("ab", "c") != stable_seed("a", "bc")  # parts are separated, not concatenated


def test_split_is_deterministic_and_independent_of_input_order() -> None:
    queries = _queries()
    shuffled = queries[:]
    random.Random(7).shuffle(shuffled)
    a, b = split_queries(queries, seed=3), split_queries(shuffled, seed=3)
    assert {k: set(v) for k, v in _ids(a).items()} == {k: set(v) for k, v in _ids(b).items()}
    assert _ids(a) == _ids(split_queries(queries, seed=3))
    assert _ids(a) != _ids(split_queries(queries, seed=4))


def test_split_is_disjoint_and_complete() -> None:
    ids = _ids(split_queries(_queries(), 0.3, 0.15, seed=0))
    everything = ids["train"] + ids["val"] + ids["test"]
    assert len(everything) == len(set(everything)) == sum(SIZES.values())
    assert set(everything) == {q.query_id for q in _queries()}


def test_split_fractions_per_type() -> None:
    splits = split_queries(_queries(), test_fraction=0.3, val_fraction=0.15, seed=0)
    counts = {
        name: {t: sum(q.query_type is t for q in split) for t in SIZES} for name, split in splits.items()
    }
    # hand-computed with round-half-even: n_test = round(0.3 n) capped at n-1, n_val = round(0.15 rest)
    assert counts["test"] == {
        QueryType.EXPLICIT: 12, QueryType.IMPLICIT: 5, QueryType.MISINFORMED: 2,
        QueryType.INTEREST_BASED: 1, QueryType.DEMOGRAPHICS: 0,
    }
    assert counts["val"] == {
        QueryType.EXPLICIT: 4, QueryType.IMPLICIT: 2, QueryType.MISINFORMED: 1,
        QueryType.INTEREST_BASED: 0, QueryType.DEMOGRAPHICS: 0,
    }
    for t, n in SIZES.items():
        # every type keeps at least one training query (a lone query goes to train)
        assert counts["train"][t] >= 1
        if n >= 10:  # large groups: fractions within rounding
            assert abs(counts["test"][t] - 0.3 * n) <= 0.5
            assert abs(counts["val"][t] - 0.15 * (n - counts["test"][t])) <= 0.5


def test_split_extreme_fractions_keep_a_training_query() -> None:
    splits = split_queries(_queries(), test_fraction=0.99, val_fraction=0.99, seed=0)
    for t in SIZES:
        assert sum(q.query_type is t for q in splits["train"]) == 1
    assert split_queries([], seed=0) == {"train": [], "val": [], "test": []}


@pytest.mark.parametrize(("test", "val"), [(1.0, 0.1), (-0.1, 0.1), (0.3, 1.0)])
def test_split_rejects_bad_fractions(test: float, val: float) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_queries(_queries(), test, val)
