"""Candidate and open tasks (``rerec.data.tasks``): one truth among N, admissible negatives, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerec.data.kg_input import item_attributes
from rerec.data.recbench import load_release
from rerec.data.records import Query, QueryType, Release
from rerec.data.synthetic import SyntheticWorldConfig, write_world
from rerec.data.tasks import RecTask, build_candidate_tasks, build_open_tasks, satisfies

CATALOG = list(range(1, 31))
# item i: genre G{i % 3}, director D{i % 5}; item 30 also has a star
ATTRS: dict[int, set[tuple[str, str]]] = {
    i: {("Genre", f"G{i % 3}"), ("Directed_by", f"D{i % 5}")} for i in CATALOG
}
ATTRS[30].add(("Starring", "S"))


def _query(qid: str, truth: tuple[int, ...], conditions=(), history=(), qtype=QueryType.EXPLICIT) -> Query:
    return Query(
        query_id=qid, domain="movie", query_type=qtype, text="q", conditions=tuple(conditions),
        truth_item_ids=truth, history_item_ids=tuple(history),
    )


def test_satisfies() -> None:
    assert satisfies(ATTRS, 4, [("Genre", "G1"), ("Directed_by", "D4")])
    assert satisfies(ATTRS, 4, [["Genre", "G1"]])  # lists from JSON work too
    assert not satisfies(ATTRS, 4, [("Genre", "G1"), ("Directed_by", "D0")])
    assert not satisfies(ATTRS, 99, [])  # not in the graph
    assert satisfies(ATTRS, 4, [])  # no condition: any item in the graph


def test_one_truth_among_n_and_negatives_never_satisfy() -> None:
    # truth 4 and 7 both satisfy G1; every other G1 item (1, 10, 13, ...) must be banned as well
    q = _query("q/0", (4, 7), [("Genre", "G1")])
    tasks, stats = build_candidate_tasks([q], CATALOG, ATTRS, num_candidates=10, seed=0)
    assert stats == {"skipped_no_truth": 0, "skipped_small_catalog": 0}
    (task,) = tasks
    assert len(task.candidate_ids) == 10 == len(set(task.candidate_ids))
    assert task.target_id in (4, 7)
    assert [c for c in task.candidate_ids if c in (4, 7)] == [task.target_id]
    assert all(not satisfies(ATTRS, c, q.conditions) for c in task.candidate_ids if c != task.target_id)
    assert (task.query_id, task.query_type, task.truth_ids) == ("q/0", "explicit", (4, 7))


def test_skip_counters_and_small_catalog() -> None:
    no_truth = _query("q/none", ())
    # 10 items satisfy G1, so 20 admissible negatives: 21 candidates fit, 22 do not
    q = _query("q/1", (4,), [("Genre", "G1")])
    tasks, stats = build_candidate_tasks([no_truth, q], CATALOG, ATTRS, num_candidates=21)
    assert len(tasks) == 1 and stats == {"skipped_no_truth": 1, "skipped_small_catalog": 0}
    assert sum(not satisfies(ATTRS, c, q.conditions) for c in tasks[0].candidate_ids) == 20
    tasks, stats = build_candidate_tasks([no_truth, q], CATALOG, ATTRS, num_candidates=22)
    assert tasks == [] and stats == {"skipped_no_truth": 1, "skipped_small_catalog": 1}


@pytest.mark.parametrize("n", [1, 0, -3])
def test_fewer_than_two_candidates_raise(n: int) -> None:
    with pytest.raises(ValueError, match="num_candidates"):
        build_candidate_tasks([_query("q", (1,))], CATALOG, ATTRS, num_candidates=n)


def test_deterministic_per_query_independent_of_order_and_seeded() -> None:
    queries = [_query(f"q/{i}", (i, i + 1), qtype=QueryType.INTEREST_BASED) for i in range(1, 20)]
    forward, _ = build_candidate_tasks(queries, CATALOG, ATTRS, num_candidates=8, seed=3)
    backward, _ = build_candidate_tasks(queries[::-1], CATALOG[::-1], ATTRS, num_candidates=8, seed=3)
    key = {t.query_id: (t.candidate_ids, t.target_id) for t in forward}
    assert key == {t.query_id: (t.candidate_ids, t.target_id) for t in backward}
    # a query alone gets the same task as inside a batch
    alone, _ = build_candidate_tasks(queries[5:6], CATALOG, ATTRS, num_candidates=8, seed=3)
    assert (alone[0].candidate_ids, alone[0].target_id) == key["q/6"]
    other, _ = build_candidate_tasks(queries, CATALOG, ATTRS, num_candidates=8, seed=4)
    assert key != {t.query_id: (t.candidate_ids, t.target_id) for t in other}
    # the truth item sits at varying positions (candidates are shuffled)
    assert len({t.candidate_ids.index(t.target_id) for t in forward}) > 1


def test_hard_negatives_share_attributes_then_history() -> None:
    # target 4 = (G1, D4); G1 items are banned, so the sharers are the D4 items outside G1: 9, 14, 24, 29
    q = _query("q/h", (4,), [("Genre", "G1")], history=(2, 3, 5, 4))
    tasks, _ = build_candidate_tasks([q], CATALOG, ATTRS, num_candidates=5, negatives="hard")
    assert set(tasks[0].candidate_ids) == {4, 9, 14, 24, 29}
    # more room: all sharers, then the history items that are admissible (2, 3, 5; 4 is the truth)
    tasks, _ = build_candidate_tasks([q], CATALOG, ATTRS, num_candidates=8, negatives="hard")
    assert set(tasks[0].candidate_ids) == {4, 9, 14, 24, 29, 2, 3, 5}
    # even more room: the rest is random but still admissible
    tasks, _ = build_candidate_tasks([q], CATALOG, ATTRS, num_candidates=12, negatives="hard")
    cands = set(tasks[0].candidate_ids)
    assert {4, 9, 14, 24, 29, 2, 3, 5} <= cands and len(cands) == 12
    assert all(not satisfies(ATTRS, c, q.conditions) for c in cands - {4})
    # random negatives are drawn from the whole admissible pool (only 4 of its 20 items share with 4)
    random_tasks = [build_candidate_tasks([q], CATALOG, ATTRS, num_candidates=5, seed=s)[0][0] for s in range(5)]
    assert any(not ATTRS[4] & ATTRS[c] for t in random_tasks for c in t.candidate_ids)


def test_hard_negatives_distinct_with_repeated_history() -> None:
    # target 1 has no attributes, so the history group is the first source of negatives
    attrs = {i: {("Genre", f"G{i}")} for i in range(2, 11)}
    q = _query("q/d", (1,), history=(2, 2, 2, 3), qtype=QueryType.INTEREST_BASED)
    tasks, _ = build_candidate_tasks([q], list(range(1, 11)), attrs, num_candidates=4, negatives="hard")
    assert len(set(tasks[0].candidate_ids)) == 4


def test_open_tasks() -> None:
    queries = [_query("q/a", (1, 2)), _query("q/b", ()), _query("q/c", (3,))]
    tasks, stats = build_open_tasks(queries)
    assert [t.query_id for t in tasks] == ["q/a", "q/c"] and stats == {"skipped_no_truth": 1}
    assert all(t.candidate_ids == () and t.target_id == -1 for t in tasks)
    assert tasks[0] == RecTask(queries[0])


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    root: Path = tmp_path_factory.mktemp("world")
    write_world(root, SyntheticWorldConfig(num_items=300, num_users=60, num_explicit=40, num_implicit=20,
                                           num_misinformed=20, num_interest_records=8))
    return load_release(root, "movie")


@pytest.mark.parametrize("negatives", ["random", "hard"])
def test_tasks_on_the_synthetic_world(release: Release, negatives: str) -> None:
    attrs = item_attributes(release.triples)
    tasks, stats = build_candidate_tasks(
        release.queries, list(release.items), attrs, num_candidates=20, negatives=negatives, seed=0
    )
    assert len(tasks) == len(release.queries) and sum(stats.values()) == 0
    for t in tasks:
        assert len(t.candidate_ids) == 20 == len(set(t.candidate_ids))
        assert set(t.candidate_ids) <= set(release.items)
        assert [c for c in t.candidate_ids if c in t.truth_ids] == [t.target_id]
        if t.query.conditions:
            assert satisfies(attrs, t.target_id, t.query.conditions)
            assert sum(satisfies(attrs, c, t.query.conditions) for c in t.candidate_ids) == 1
    if negatives == "hard":  # most negatives share an attribute with the target
        shared = [bool(attrs[t.target_id] & attrs[c]) for t in tasks for c in t.candidate_ids if c != t.target_id]
        assert sum(shared) / len(shared) > 0.9
