"""Per-query evaluation records, their per-type aggregate, and the files written in the run folder.

``validate``/``test`` turn each completion into an :class:`EvalRecord` (read by the reward's one
parse-and-match path, :meth:`rerec.rl.rewards.RecReward.read`), :func:`aggregate` averages the metrics per query type and overall,
:func:`write_report` writes them as ``<name>.json`` and a ``<name>.md`` table, and ``predict`` writes
the records as JSONL with :func:`write_predictions_jsonl`. Every file is written atomically (temporary
file in the same folder, then ``os.replace``), so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerec.atomic import atomic_write_text
from rerec.data.records import QueryType
from rerec.eval.metrics import (
    condition_satisfaction,
    ftr,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

CONDITION_TYPES = frozenset(t.value for t in QueryType if t.is_condition_query)

#: How each scoring protocol reads and scores answers, as the per-type tables state it
#: (docs/recbench-scoring.md has every rule and the differences, with worked examples).
PROTOCOLS: dict[str, str] = {
    "corrected": (
        "titles matched to catalog items by the title matcher (years compared on both sides), empty "
        "titles dropped, a repeated item counted once, NDCG's ideal DCG over min(|truth|, K) hits, FTR = "
        "share of answers with no parsable list"
    ),
    "official": (
        "RecBench+'s own evaluation script reproduced exactly: [SEP] split, fuzzy string match "
        "(difflib ratio) against the ground-truth titles, FTR = answer without [SEP]"
    ),
}


@dataclass
class EvalRecord:
    """One evaluated query.

    Attributes:
        query_id: ``Query.query_id``.
        query_type: The query type's value (``"explicit"``, ...).
        completion: The model's raw text.
        parsed_titles: Titles parsed from the answer, or ``None`` when it could not be parsed.
        matched_item_ids: Catalog id per parsed title, ``-1`` where the title matched nothing.
        match_kinds: Match kind per parsed title (``exact``/``normalized``/``fuzzy``/``none``).
        truth_item_ids: Ground-truth ids.
        conditions: The query's ``(relation, value)`` conditions (condition queries).
        candidate_item_ids: The prompt's candidates (candidate task; empty for the open task).
        as_asked: Whether the answer was written in the format the prompt asked for (``None``: not
            recorded; every parsed answer counts as asked).
    """

    query_id: str
    query_type: str
    completion: str
    parsed_titles: list[str] | None
    matched_item_ids: list[int]
    match_kinds: list[str]
    truth_item_ids: list[int]
    conditions: list[tuple[str, str]] = field(default_factory=list)
    candidate_item_ids: list[int] = field(default_factory=list)
    as_asked: bool | None = None

    @property
    def in_asked_format(self) -> bool:
        return self.parsed_titles is not None if self.as_asked is None else self.as_asked


def metric_names(k: int) -> list[str]:
    """Column order of the report for cut-off ``k``."""
    return [
        f"ndcg@{k}", f"recall@{k}", f"precision@{k}", f"hr@{k}", "accuracy", "ftr", "off_candidate",
        "condition_satisfaction", "count",
    ]


def _type_order(types: Iterable[str]) -> list[str]:
    """The given query types in :class:`QueryType` order, unknown ones after them, sorted."""
    present = set(types)
    known = [t.value for t in QueryType]
    return [t for t in known if t in present] + sorted(present - set(known))


def aggregate(
    records: Iterable[EvalRecord],
    k: int,
    item_attributes: Mapping[int, set[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """Mean metrics per query type and overall.

    Per record: NDCG/Recall/Precision/HR@K of ``matched_item_ids`` against ``truth_item_ids`` (an
    unparsable answer is an empty list: all zero), accuracy = NDCG@1 of the top prediction, and FTR =
    share of unparsable answers. ``off_candidate`` = share of parsed answers whose top title is none of
    the prompt's candidates (candidate task; ``None`` when no record lists candidates).
    ``condition_satisfaction`` (:func:`~rerec.eval.metrics.condition_satisfaction` over the first K
    predictions) is averaged over condition queries only, and only when ``item_attributes`` is given;
    elsewhere it is ``None``.

    These are the rules of the ``corrected`` protocol (:data:`PROTOCOLS`), and the result says so.

    Returns:
        ``{"k": k, "protocol": "corrected", "overall": {metric: value}, "by_type": {type: {metric:
        value}}}``; ``count`` is the number of queries. Types appear in :class:`QueryType` order.
    """
    by_type: dict[str, list[EvalRecord]] = {}
    for record in records:
        by_type.setdefault(record.query_type, []).append(record)
    order = _type_order(by_type)
    result_by_type = {t: _summarise(by_type[t], k, item_attributes) for t in order}
    everything = [r for t in order for r in by_type[t]]
    return {"k": k, "protocol": "corrected", "overall": _summarise(everything, k, item_attributes),
            "by_type": result_by_type}


def sampled_summary(records: Sequence[EvalRecord], samples: int) -> dict[str, Any]:
    """Accuracy of sampled answers: ``samples`` records per query, each query's records contiguous.

    ``accuracy`` is the mean NDCG@1 over every query and sample, i.e. the expected accuracy of one
    sampled answer; ``pass_at_n`` is the share of queries with at least one correct sample among its
    ``samples``. Both overall and per query type (types in :class:`QueryType` order); ``count`` (and
    ``count_by_type``) is the number of queries. A greedy answer flips at near-ties of the policy, so
    greedy accuracy moves by whole queries; the sampled accuracy is a smooth function of the policy
    that RL optimises.

    Raises:
        ValueError: ``samples`` < 1, a record count that is not a multiple of ``samples``, or a group
            whose records belong to different queries.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if len(records) % samples:
        raise ValueError(f"{len(records)} records are not whole groups of {samples} samples")
    groups: dict[str, list[list[float]]] = {}
    for start in range(0, len(records), samples):
        group = records[start : start + samples]
        if len({r.query_id for r in group}) != 1:
            ids = sorted({r.query_id for r in group})
            raise ValueError(f"records {start}..{start + samples - 1} mix queries: {ids}")
        hits = [ndcg_at_k(r.matched_item_ids, set(r.truth_item_ids), 1) for r in group]
        groups.setdefault(group[0].query_type, []).append(hits)
    order = _type_order(groups)

    def mean_accuracy(gs: list[list[float]]) -> float:
        return sum(map(sum, gs)) / (samples * len(gs)) if gs else 0.0

    def pass_at_n(gs: list[list[float]]) -> float:
        return sum(max(g) > 0 for g in gs) / len(gs) if gs else 0.0

    every = [g for t in order for g in groups[t]]
    return {
        "samples": samples,
        # Share of sampled answers that parse (as read: lenient reading accepts lists), and that are in the
        # format the prompt asked for.
        "parse_rate": sum(r.parsed_titles is not None for r in records) / len(records) if records else 0.0,
        "format_rate": sum(r.in_asked_format for r in records) / len(records) if records else 0.0,
        "accuracy": mean_accuracy(every),
        "accuracy_by_type": {t: mean_accuracy(groups[t]) for t in order},
        "pass_at_n": pass_at_n(every),
        "pass_at_n_by_type": {t: pass_at_n(groups[t]) for t in order},
        "count": len(every),
        "count_by_type": {t: len(groups[t]) for t in order},
    }


def _summarise(
    records: Sequence[EvalRecord], k: int, item_attributes: Mapping[int, set[tuple[str, str]]] | None
) -> dict[str, float | int | None]:
    n = len(records)
    sums = dict.fromkeys(("ndcg", "recall", "precision", "hr", "accuracy"), 0.0)
    satisfaction: list[float] = []
    off: list[bool] = []
    for r in records:
        if r.candidate_item_ids and r.parsed_titles is not None:
            off.append(not r.matched_item_ids or r.matched_item_ids[0] not in r.candidate_item_ids)
        predicted, truth = r.matched_item_ids, set(r.truth_item_ids)
        sums["ndcg"] += ndcg_at_k(predicted, truth, k)
        sums["recall"] += recall_at_k(predicted, truth, k)
        sums["precision"] += precision_at_k(predicted, truth, k)
        sums["hr"] += hit_rate_at_k(predicted, truth, k)
        sums["accuracy"] += ndcg_at_k(predicted, truth, 1)
        if item_attributes is not None and r.query_type in CONDITION_TYPES:
            satisfaction.append(condition_satisfaction(predicted[:k], r.conditions, item_attributes))
    mean = {name: (value / n if n else 0.0) for name, value in sums.items()}
    return {
        f"ndcg@{k}": mean["ndcg"],
        f"recall@{k}": mean["recall"],
        f"precision@{k}": mean["precision"],
        f"hr@{k}": mean["hr"],
        "accuracy": mean["accuracy"],
        "ftr": ftr([r.parsed_titles for r in records]),
        "format_rate": sum(r.in_asked_format for r in records) / n if n else 0.0,
        "off_candidate": sum(off) / len(off) if off else None,
        "condition_satisfaction": sum(satisfaction) / len(satisfaction) if satisfaction else None,
        "count": n,
    }


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(result: Mapping[str, Any]) -> str:
    """The :func:`aggregate` result as a markdown table: one row per query type, then ``overall``."""
    columns = metric_names(int(result["k"]))
    lines = ["| query type | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    rows = list(result["by_type"].items()) + [("overall", result["overall"])]
    for name, metrics in rows:
        lines.append(f"| {name} | " + " | ".join(_cell(metrics.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def protocol_line(protocol: str) -> str:
    """The sentence a per-type table starts with: which protocol scored it, and its rules in brief."""
    return f"Scored with the **{protocol}** protocol: {PROTOCOLS.get(protocol, 'see docs/recbench-scoring.md')}."


def write_report(result: Mapping[str, Any], folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``<folder>/<name>.json`` (the result) and ``<folder>/<name>.md`` (its table), atomically.

    The markdown states the protocol that produced the table (``result["protocol"]``; ``corrected``
    when the result does not say).

    Returns:
        The JSON and markdown paths.
    """
    folder = Path(folder)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    atomic_write_text(json_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    protocol = protocol_line(str(result.get("protocol", "corrected")))
    atomic_write_text(md_path, f"# {name} (K = {result['k']})\n\n{protocol}\n\n" + markdown_table(result))
    return json_path, md_path


def write_predictions_jsonl(records: Iterable[EvalRecord], path: str | os.PathLike[str]) -> Path:
    """Write one JSON line per record: ``query_id``, ``type``, ``completion``, ``parsed_titles``,
    ``matched_item_ids``, ``match_kinds`` (atomically)."""
    lines = [
        json.dumps(
            {
                "query_id": r.query_id,
                "type": r.query_type,
                "completion": r.completion,
                "parsed_titles": r.parsed_titles,
                "matched_item_ids": r.matched_item_ids,
                "match_kinds": r.match_kinds,
            },
            ensure_ascii=False,
        )
        for r in records
    ]
    path = Path(path)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path
