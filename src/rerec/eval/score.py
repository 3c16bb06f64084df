"""Score a predictions file on one RecBench+ query file, by the ``official`` or the ``corrected`` protocol.

``python -m rerec.eval score <release root> --domain movie --type demographics --predictions FILE
--protocol official`` (see :mod:`rerec.eval.__main__`). The release is read by
:func:`rerec.data.recbench.load_release` (catalog, knowledge graph, queries); the query file of the type
is also read raw, for what the benchmark's script reads of it.

**Query ids** are the benchmark's: a condition query (explicit, implicit, misinformed) is its record's
``data_idx``; a query of an interest-based or demographics record is ``"<record>-<query>"``, the
record's position in the file and the query's position among the record's non-empty ``"query & ground
true"`` entries (the benchmark's script indexes the file's list, so this is the position, not the
record's ``data_idx``, which can differ in an excerpt of the file). ReRec's own ids
(``movie/demographics/30/1``) are accepted from ReRec's ``predictions.jsonl``; its lines of other query
types are counted and passed over.

**Bad lines** of the predictions file (:mod:`rerec.eval.predictions`), and predictions whose id is not a
query of the file or repeats an earlier one, raise an error naming the file and line, or with
``on_error="skip"`` are logged and counted. Queries without a prediction are counted; the means are over
the scored queries, as the benchmark's script averages over its predictions.

Outputs: ``per_query.jsonl`` (one line per scored query: ``id``, ``ndcg``, ``recall``, ``precision``,
``ftr``, for condition queries ``satisfied_ratio`` and ``existence_in_catalog_ratio``, then the
protocol's details) and ``summary.json`` (:func:`score_predictions`' result).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerec.atomic import atomic_write_json, atomic_write_text
from rerec.data.answer import ANSWER_FORMATS, AnswerFormat
from rerec.data.kg_input import item_attributes
from rerec.data.matching import DEFAULT_THRESHOLDS
from rerec.data.movielens import PathLike
from rerec.data.recbench import MULTI_QUERY_FIELD, load_json_records, load_release
from rerec.data.records import Query, QueryType, Release
from rerec.eval import corrected, official
from rerec.eval.predictions import LineErrors, OnError, Prediction, read_predictions

logger = logging.getLogger("rerec.eval")

PROTOCOLS = ("official", "corrected")
METRICS = ("ndcg", "recall", "precision", "ftr")
CONDITION_METRICS = ("satisfied_ratio", "existence_in_catalog_ratio")

# Accepted spellings of --type: the type names, the benchmark's file stems, and a few variants.
_TYPE_NAMES: dict[str, QueryType] = {}
for _t in QueryType:
    for _name in (_t.value, _t.value.replace("_", "-"), _t.value.replace("_", ""), _t.file_name.removesuffix(".json"),
                  _t.file_name):
        _TYPE_NAMES[_name.lower()] = _t
for _name in ("user_based", "user-based", "userbased", "demographics_based", "demographics-based"):
    _TYPE_NAMES[_name] = QueryType.DEMOGRAPHICS


def parse_query_type(name: str) -> QueryType:
    """``"demographics"``, ``"UserBasedQuery"``, ``"interest-based"``, ... → the :class:`QueryType`."""
    try:
        return _TYPE_NAMES[name.strip().lower()]
    except KeyError:
        known = ", ".join(t.value for t in QueryType)
        stems = ", ".join(t.file_name.removesuffix(".json") for t in QueryType)
        raise ValueError(f"unknown query type {name!r}: expected one of {known} (or {stems})") from None


@dataclass(frozen=True)
class BenchQuery:
    """One query of the file, as both protocols see it.

    Attributes:
        bench_id: The benchmark's id (``"3862"``, ``"30-1"``).
        query: ReRec's record of the query (ground-truth ids, conditions) for the corrected protocol.
        truth: What the benchmark's script reads of it, for the official protocol.
    """

    bench_id: str
    query: Query
    truth: official.OfficialTruth


@dataclass
class QueryFile:
    """The queries of one type of a release, and what scoring them needs."""

    release: Release
    query_type: QueryType
    path: Path
    queries: list[BenchQuery]
    by_bench_id: dict[str, BenchQuery]
    by_query_id: dict[str, BenchQuery]


def _record_key(record: dict[str, Any], position: int) -> str:
    """The reader's key of a record: its ``data_idx`` (int or digit string), else its position."""
    value = record.get("data_idx")
    return str(position) if value is None else str(int(value))


def load_query_file(root: PathLike, domain: str, query_type: QueryType) -> QueryFile:
    """Read the release and pair each query of ``query_type`` with its benchmark id and raw ground truth.

    Raises:
        FileNotFoundError: No such domain folder, or no query file of that type in it.
        RecBenchFormatError: A malformed release file (named with its record and field).
    """
    release = load_release(root, domain)
    path = Path(release.stats["folder"]) / query_type.file_name
    if not path.exists():
        raise FileNotFoundError(f"no {query_type.value} queries: {path} does not exist")
    records = load_json_records(path)
    rerec_queries = {q.query_id: q for q in release.queries if q.query_type is query_type}
    subset_ids = (f"{domain}SubsetId", "movieSubsetId")
    queries: list[BenchQuery] = []
    for position, record in enumerate(records):
        key = _record_key(record, position)
        prefix = f"{domain}/{query_type.value}/{key}"
        if query_type.is_condition_query:
            q = rerec_queries[prefix]
            ids = next((record[n] for n in subset_ids if n in record), None)
            truth = official.OfficialTruth(q.truth_titles, tuple(ids) if isinstance(ids, list) else (), q.conditions)
            queries.append(BenchQuery(key, q, truth))
            continue
        entries = [e for e in record[MULTI_QUERY_FIELD] if e != {}]
        for j in range(len(entries)):
            q = rerec_queries[f"{prefix}/{j}"]
            queries.append(BenchQuery(f"{position}-{j}", q, official.OfficialTruth(q.truth_titles)))
    return QueryFile(
        release, query_type, path, queries,
        by_bench_id={b.bench_id: b for b in queries}, by_query_id={b.query.query_id: b for b in queries},
    )


def _bench_id(raw: str, condition: bool) -> str | None:
    """A benchmark id in canonical form (``" 007"`` → ``"7"``, ``"3-01"`` → ``"3-1"``); ``None`` if
    malformed."""
    pieces = raw.strip().split("-")
    if len(pieces) != (1 if condition else 2) or not all(p.strip().isdigit() for p in pieces):
        return None
    return "-".join(str(int(p)) for p in pieces)


def _pair(
    predictions: Sequence[Prediction], qfile: QueryFile, errors: LineErrors
) -> tuple[list[tuple[Prediction, BenchQuery]], int]:
    """Each prediction with its query; bad ids go to ``errors``. Returns the pairs and the number of
    ReRec lines of other query types."""
    pairs: list[tuple[Prediction, BenchQuery]] = []
    first_line: dict[str, int] = {}
    other_type = 0
    condition = qfile.query_type.is_condition_query
    for p in predictions:
        if p.source == "rerec":
            if p.query_type is not None and p.query_type != qfile.query_type.value:
                other_type += 1
                continue
            query = qfile.by_query_id.get(p.id)
            if query is None:
                errors.bad(p.line, f"{p.id!r} is not a query of {qfile.path.name}", "query_id")
                continue
        else:
            canonical = _bench_id(p.id, condition)
            expected = "a data_idx" if condition else "'<record>-<query>'"
            query = qfile.by_bench_id.get(canonical) if canonical is not None else None
            name = "custom_id" if p.source == "openai_batch" else "id"
            if canonical is None:
                errors.bad(p.line, f"{p.id!r} is not a query id of {qfile.path.name} (expected {expected})", name)
                continue
            if query is None:
                errors.bad(p.line, f"no query {p.id!r} in {qfile.path.name}", name)
                continue
        if query.bench_id in first_line:
            errors.bad(p.line, f"a second prediction for query {query.bench_id!r} (first on line "
                       f"{first_line[query.bench_id]})")
            continue
        first_line[query.bench_id] = p.line
        pairs.append((p, query))
    return pairs, other_type


def score_predictions(
    root: PathLike,
    domain: str,
    query_type: QueryType | str,
    predictions: PathLike,
    protocol: str,
    *,
    k: int = 0,
    answer_format: AnswerFormat = "sep",
    on_error: OnError = "raise",
    out: PathLike | None = None,
) -> dict[str, Any]:
    """Score a predictions file; write ``per_query.jsonl`` and ``summary.json`` under ``out`` if given.

    Args:
        root: Release folder holding ``<domain>/``.
        domain: ``"movie"`` or ``"book"``.
        query_type: Which query file (a :class:`QueryType` or any spelling :func:`parse_query_type` takes).
        predictions: The predictions file (:func:`rerec.eval.predictions.read_predictions`).
        protocol: ``"official"`` (:mod:`rerec.eval.official`) or ``"corrected"`` (:mod:`rerec.eval.corrected`).
        k: 0 scores every title of an answer; k > 0 the first k.
        answer_format: How the corrected protocol reads answers: ``"sep"`` (the benchmark's lists) or
            ``"boxed"`` (ReRec's own prompts). The official protocol always splits on ``[SEP]``.
        on_error: ``"raise"`` on the first bad line of the predictions file, or ``"skip"`` it (counted).
        out: Folder for ``per_query.jsonl`` and ``summary.json``.

    Returns:
        The summary: ``protocol``, ``domain``, ``type``, ``file``, ``k``, the protocol's settings, ``means``
        (per metric over the scored queries; −1 (official) or ``None`` (corrected) values left out),
        ``defined`` (how many queries each condition mean is over), ``queries`` (in the file),
        ``scored``, ``without_prediction``, ``predictions`` (path, kinds of line, skipped lines, lines of
        other types) and the protocol's ground-truth counts (``unreachable_truth_titles`` of the
        official protocol, ``queries_without_truth`` of the corrected one).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    qtype = query_type if isinstance(query_type, QueryType) else parse_query_type(query_type)
    qfile = load_query_file(root, domain, qtype)
    read = read_predictions(predictions, on_error)
    pairs, other_type = _pair(read.predictions, qfile, read.errors)
    responses = [p.response for p, _ in pairs]
    threshold = DEFAULT_THRESHOLDS.get(domain, 0.8)
    release = qfile.release
    attributes = item_attributes(release.triples)
    summary: dict[str, Any] = {"protocol": protocol, "domain": domain, "type": qtype.value,
                               "file": qfile.path.name, "k": k}
    if protocol == "official":
        lookup = official.CatalogLookup(release.items) if qtype.is_condition_query else None
        rows = [official.score(text, q.truth, k=k, threshold=threshold, lookup=lookup, attributes=attributes)
                for text, (_, q) in zip(responses, pairs)]
        mean = official.mean_without_missing
        summary["threshold"] = threshold
    else:
        rows = corrected.score_all(responses, [q.query for _, q in pairs], items=release.items,
                                   matcher=release.matcher, attributes=attributes, k=k, answer_format=answer_format)
        mean = corrected.mean_of_defined
        summary["answer_format"] = answer_format
    metrics = METRICS + (CONDITION_METRICS if qtype.is_condition_query else ())
    summary["means"] = {m: mean([row[m] for row in rows]) for m in metrics}
    if qtype.is_condition_query:
        summary["defined"] = {m: sum(row[m] not in (None, -1) for row in rows) for m in CONDITION_METRICS}
    summary.update(queries=len(qfile.queries), scored=len(rows), without_prediction=len(qfile.queries) - len(rows))
    scored = [q for _, q in pairs]
    if protocol == "official":
        summary["truth_titles"] = sum(len(q.truth.titles) for q in scored)
        summary["unreachable_truth_titles"] = sum(row["unreachable_truth"] for row in rows)
    else:
        summary["queries_without_truth"] = sum(not q.query.truth_item_ids for q in scored)
    summary["predictions"] = {
        "path": str(read.path), "lines": read.sources, "skipped_lines": read.errors.count,
        "skipped": sorted(read.errors.details, key=lambda d: d["line"]), "other_type_lines": other_type,
    }
    if summary["without_prediction"]:
        logger.warning("%d of %d %s queries have no prediction (left out of the means)",
                       summary["without_prediction"], len(qfile.queries), qtype.value)
    if out is not None:
        per_query = [{"id": q.bench_id, **row} for (_, q), row in zip(pairs, rows)]
        write_outputs(out, per_query, summary)
    return summary


def write_outputs(folder: PathLike, per_query: Sequence[dict[str, Any]], summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<folder>/per_query.jsonl`` and ``<folder>/summary.json`` atomically; returns both paths."""
    folder = Path(folder)
    lines_path, summary_path = folder / "per_query.jsonl", folder / "summary.json"
    atomic_write_text(lines_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in per_query))
    atomic_write_json(summary_path, summary, indent=2, ensure_ascii=False)
    return lines_path, summary_path
