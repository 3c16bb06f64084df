"""Training and evaluation tasks built from queries: the candidate task (the paper's) and the open task.

Candidate task: the ground truth (one item of the query's truth set) plus ``N−1`` negatives, shuffled;
the model answers with one title. Negatives never include a truth item and, for condition queries with a
knowledge graph, never an item that satisfies every condition (it would be a correct answer marked wrong).
``random`` negatives are uniform over the rest of the catalog; ``hard`` negatives are first taken from items
sharing attributes with the truth, then from the source user's history, then at random.
Everything is deterministic per (seed, query id), independent of the order queries come in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rerec.data.records import Query
from rerec.data.splits import stable_seed

Attributes = Mapping[int, frozenset[tuple[str, str]] | set[tuple[str, str]]]


@dataclass(frozen=True)
class RecTask:
    """One prompt's worth of work.

    Attributes:
        query: The request.
        candidate_ids: Candidate item ids in prompt order (empty for the open task).
        target_id: The truth item among the candidates (−1 for the open task).
    """

    query: Query
    candidate_ids: tuple[int, ...] = ()
    target_id: int = -1

    @property
    def query_id(self) -> str:
        return self.query.query_id

    @property
    def query_type(self) -> str:
        return self.query.query_type.value

    @property
    def truth_ids(self) -> tuple[int, ...]:
        """Every ground-truth item of the query (the graph rewards' A(g) is over all of them)."""
        return self.query.truth_item_ids

    @property
    def answer_ids(self) -> tuple[int, ...]:
        """Items that count as a hit: the target for the candidate task (a truth item left out of the
        list is not a valid choice), every truth item for the open task."""
        return (self.target_id,) if self.candidate_ids else self.query.truth_item_ids


def satisfies(attributes: Attributes, item_id: int, conditions: Sequence[tuple[str, str]]) -> bool:
    """True when the item is in the graph and has every ``(relation, value)`` condition."""
    attrs = attributes.get(item_id)
    return bool(attrs) and all(tuple(c) in attrs for c in conditions)


def build_candidate_tasks(
    queries: Sequence[Query],
    item_ids: Sequence[int],
    attributes: Attributes,
    num_candidates: int = 20,
    negatives: Literal["random", "hard"] = "random",
    seed: int = 0,
) -> tuple[list[RecTask], dict[str, int]]:
    """Candidate tasks for every query with at least one matched truth item.

    Returns the tasks and counters: ``skipped_no_truth`` (no truth title matched the catalog) and
    ``skipped_small_catalog`` (fewer than ``num_candidates − 1`` admissible negatives).
    """
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be ≥ 2, got {num_candidates}")
    catalog = np.array(sorted(set(item_ids)), dtype=np.int64)
    tasks: list[RecTask] = []
    stats = {"skipped_no_truth": 0, "skipped_small_catalog": 0}
    for q in queries:
        if not q.truth_item_ids:
            stats["skipped_no_truth"] += 1
            continue
        rng = np.random.default_rng(stable_seed(seed, "candidates", q.query_id))
        truth = sorted(set(q.truth_item_ids))
        target = int(truth[rng.integers(len(truth))])
        banned = set(truth)
        if q.conditions:
            banned |= {int(i) for i in catalog if satisfies(attributes, int(i), q.conditions)}
        pool = [int(i) for i in catalog if int(i) not in banned]
        pool_set = set(pool)
        need = num_candidates - 1
        if len(pool) < need:
            stats["skipped_small_catalog"] += 1
            continue
        chosen: list[int] = []
        if negatives == "hard":
            target_attrs = attributes.get(target, set())
            sharing = [i for i in pool if target_attrs & attributes.get(i, set())]
            history = list(dict.fromkeys(i for i in q.history_item_ids if i in pool_set))
            for group in (sharing, history):
                fresh = [i for i in group if i not in chosen]
                take = min(len(fresh), need - len(chosen))
                if take > 0:
                    chosen += [fresh[j] for j in rng.choice(len(fresh), size=take, replace=False)]
        chosen_set = set(chosen)
        rest = [i for i in pool if i not in chosen_set]
        chosen += [rest[j] for j in rng.choice(len(rest), size=need - len(chosen), replace=False)]
        candidates = [target, *chosen]
        order = rng.permutation(len(candidates))
        tasks.append(RecTask(q, tuple(candidates[j] for j in order), target))
    return tasks, stats


def build_open_tasks(queries: Sequence[Query]) -> tuple[list[RecTask], dict[str, int]]:
    """Open-task tasks (the model lists up to K titles) for queries with a matched truth."""
    tasks = [RecTask(q) for q in queries if q.truth_item_ids]
    return tasks, {"skipped_no_truth": len(queries) - len(tasks)}
