"""Readers of a RecBench+ release (files and fields: ``docs/recbench.md``) into typed records.

One domain folder ``<root>/<domain>/`` holds a MovieLens-format catalog, optional ``users.dat`` and
``ratings.dat``, up to five query files and an optional ``kg_triples.tsv``; :func:`load_release` reads
what is there into a :class:`~rerec.data.records.Release`.

Decisions a user should know:

- **Catalog.** ``<domain>s.dat`` (``movies.dat``, ``books.dat``) in the MovieLens ``id::title::genres``
  format. The book domain of the public release ships no catalog file, so without one the catalog is
  built from the query files: every ``(id, title)`` pair of a ``<domain>SubsetId``/``<domain>Subset``
  list, then every other ground-truth title (deduplicated by normalised name and year) under new ids
  above the largest id seen, in order of first appearance. ``stats["catalog"]["source"]`` says which.
- **Field names** follow the domain: ``movieSubset``/``bookSubset``, ``"movie subset"``/``"book
  subset"``, ... ; the movie spelling is accepted in every domain.
- **Query ids.** ``<domain>/<type>/<data_idx>`` (the record index when a record has no ``data_idx``),
  plus ``/<j>`` for interest-based and demographics entries, ``j`` counting the non-empty entries of
  ``"query & ground true"``: the release holds some ``{}`` entries, which are skipped and counted
  (``empty_entries``), and the benchmark's own evaluation numbers the queries the same way.
- **Ground truth.** ``<domain>SubsetId`` gives the ids when it has one int per title and the id is in the
  catalog; otherwise the title goes through :class:`~rerec.data.matching.TitleMatcher`. Every title is
  counted by how it resolved (``id``, ``exact``, ``normalized``, ``fuzzy``, ``none``) per query type in
  ``stats["ground_truth_titles"]``, with the unmatched titles listed. Ids are deduplicated in order. A
  query whose titles all stay unmatched is kept (and counted as ``queries_without_truth``): task
  builders must skip queries with empty ``truth_item_ids``.
- **History.** With ``ratings.dat``, condition queries (one ``source_user``) get that user's rated items
  in time order as ``history_item_ids`` — it contains the ground truth, since the release built the
  truth from it. Multi-user queries (interest-based) get none.
- **Errors.** A malformed file (not JSON, truncated, empty, not a list), record (missing field, wrong
  type) or ``.dat`` line (a field too many or too few, a bad id) raises :class:`RecBenchFormatError`
  naming the file, record index or line, and field; with ``on_error="skip"`` it is skipped, logged and
  counted in ``stats`` instead (``.dat`` lines: ``stats["dat_files"]``). A missing query file is a
  logged note (``stats["files"][type] == "missing"``); no query file at all and an empty catalog are
  errors; a query file without records, a release with no query read, and a missing or empty
  ``users.dat`` are warnings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np

from rerec.data.kg_input import read_triples_file, release_triples
from rerec.data.matching import DEFAULT_THRESHOLDS, TitleMatcher, normalize_title, split_year
from rerec.data.movielens import PathLike, RecBenchFormatError, read_movies, read_ratings, read_users
from rerec.data.records import Interactions, Item, Query, QueryType, Release, Triple, User

__all__ = [
    "RecBenchFormatError",
    "load_release",
    "read_query_file",
    "QueryFileResult",
    "catalog_from_query_records",
    "user_histories",
]

logger = logging.getLogger("rerec.data")

OnError = Literal["raise", "skip"]
MULTI_QUERY_FIELD = "query & ground true"
RESOLUTION_KINDS = ("id", "exact", "normalized", "fuzzy", "none")  # how a ground-truth title resolved
MAX_LOGGED_SKIPS = 20  # details kept in stats; the counts are always complete


def _keys(domain: str) -> dict[str, tuple[str, ...]]:
    """Field names of a domain's files, domain spelling first, movie spelling as fallback."""
    names = {
        "subset": "{d}Subset",
        "subset_id": "{d}SubsetId",
        "entry_subset": "{d} subset",
        "shared": "Shared consecutive {d}s",
        "top": "top_10_{d}s",
        "hop_item": "{d}",
    }
    return {k: tuple(dict.fromkeys((v.format(d=domain), v.format(d="movie")))) for k, v in names.items()}


@dataclass
class _TypeStats:
    """Counters of one query file."""

    records: int = 0
    queries: int = 0
    skipped_records: int = 0
    skipped_queries: int = 0
    empty_entries: int = 0
    queries_without_truth: int = 0
    condition_num_mismatch: int = 0
    invalid_subset_ids: int = 0
    unknown_subset_ids: int = 0
    id_title_disagreements: int = 0
    conditions: int = 0
    titles_by_kind: Counter[str] = field(default_factory=Counter)
    unmatched_titles: dict[str, None] = field(default_factory=dict)  # ordered set
    skips: list[dict[str, Any]] = field(default_factory=list)

    def titles_summary(self) -> dict[str, Any]:
        total = sum(self.titles_by_kind.values())
        unmatched = self.titles_by_kind.get("none", 0)
        return {
            "total": total,
            "matched": total - unmatched,
            "unmatched": unmatched,
            "by_kind": {k: self.titles_by_kind.get(k, 0) for k in RESOLUTION_KINDS},
            "unmatched_titles": list(self.unmatched_titles),
        }

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in (
                "records", "queries", "skipped_records", "skipped_queries", "empty_entries",
                "queries_without_truth",
                "condition_num_mismatch", "invalid_subset_ids", "unknown_subset_ids",
                "id_title_disagreements",
            )
        }
        out["conditions_per_query"] = self.conditions / self.queries if self.queries else 0.0
        out["skips"] = self.skips
        return out


@dataclass
class QueryFileResult:
    """What :func:`read_query_file` read from one file.

    Attributes:
        queries: The queries, in file order.
        stats: Counters (records, skips, ground-truth resolution, ...), JSON-serialisable.
    """

    queries: list[Query]
    stats: dict[str, Any]


class _Skip(Exception):
    """Internal: the current record (or entry) is skipped; carries the error for the log."""

    def __init__(self, error: RecBenchFormatError) -> None:
        super().__init__(str(error))
        self.error = error


class _FileReader:
    """Parses the records of one query file; one instance per file."""

    def __init__(
        self,
        path: Path,
        query_type: QueryType,
        domain: str,
        matcher: TitleMatcher,
        on_error: OnError,
    ) -> None:
        self.path, self.type, self.domain = path, query_type, domain
        self.matcher, self.on_error = matcher, on_error
        self.catalog = matcher.titles  # validates given ids
        self.keys = _keys(domain)
        self.stats = _TypeStats()
        self.seen_ids: set[str] = set()

    # ------------------------------------------------------------------ errors
    def fail(self, record: int, fieldname: str | None, message: str) -> NoReturn:
        error = RecBenchFormatError(self.path, message, record=record, field=fieldname)
        if self.on_error == "raise":
            raise error
        raise _Skip(error)

    def note_skip(self, skip: _Skip, what: str) -> None:
        logger.warning("skipped %s: %s", what, skip.error)
        if len(self.stats.skips) < MAX_LOGGED_SKIPS:
            e = skip.error
            self.stats.skips.append({"record": e.record, "field": e.field, "error": str(e)})

    # ------------------------------------------------------------------ fields
    def get(
        self, rec: Mapping[str, Any], names: tuple[str, ...] | str, index: int, required: bool = True
    ) -> Any:
        """The first present field of ``names`` (domain spelling, then movie spelling)."""
        names = (names,) if isinstance(names, str) else names
        for name in names:
            if name in rec:
                return rec[name]
        if required:
            self.fail(index, names[0], "missing field")
        return None

    def text(
        self, rec: Mapping[str, Any], name: str, index: int, required: bool = True, where: str = ""
    ) -> str | None:
        """A non-empty string field; ``where`` prefixes the field name in errors (nested entries)."""
        if name not in rec:
            if required:
                self.fail(index, where + name, "missing field")
            return None
        value = rec[name]
        if not isinstance(value, str) or not value.strip():
            self.fail(index, where + name, f"expected a non-empty string, got {_show(value)}")
        return value.strip()

    def title_list(self, value: Any, index: int, name: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            self.fail(index, name, f"expected a list of title strings, got {_show(value)}")
        return value

    def conditions(self, rec: Mapping[str, Any], index: int) -> tuple[tuple[str, str], ...]:
        value = self.get(rec, "sharedRelationships", index)
        if not isinstance(value, list) or not value:
            self.fail(
                index, "sharedRelationships", f"expected a non-empty list of pairs, got {_show(value)}"
            )
        out: list[tuple[str, str]] = []
        for j, pair in enumerate(value):
            if (
                not isinstance(pair, (list, tuple))
                or len(pair) != 2
                or not isinstance(pair[0], str)
                or not isinstance(pair[1], (str, int, float))
                or isinstance(pair[1], bool)
            ):
                self.fail(
                    index, f"sharedRelationships[{j}]", f"expected [relation, value], got {_show(pair)}"
                )
            out.append((pair[0].strip(), str(pair[1]).strip()))
        declared = rec.get("condition_num")
        if declared is not None and declared != len(out):
            self.stats.condition_num_mismatch += 1
        return tuple(out)

    def record_key(self, rec: Mapping[str, Any], index: int) -> str:
        """``data_idx`` when the record has one (int or digit string), else the record index."""
        value = rec.get("data_idx")
        if value is None:
            return str(index)
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if not (is_int or (isinstance(value, str) and value.isdigit())):
            self.fail(index, "data_idx", f"expected an integer, got {_show(value)}")
        return str(int(value))

    def claim_id(self, query_id: str, index: int) -> str:
        if query_id in self.seen_ids:
            self.fail(index, "data_idx", f"duplicate query id {query_id!r}")
        self.seen_ids.add(query_id)
        return query_id

    # ------------------------------------------------------------ ground truth
    def truth(self, titles: list[str], ids: Any, index: int) -> tuple[int, ...]:
        """Resolve ground-truth titles to catalog ids (given ids first, else the matcher) and count."""
        usable_ids: list[Any] | None = None
        if ids is not None:
            if (
                isinstance(ids, list)
                and len(ids) == len(titles)
                and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                usable_ids = ids
            else:
                self.stats.invalid_subset_ids += 1
        resolved: list[int] = []
        for position, title in enumerate(titles):
            given = usable_ids[position] if usable_ids is not None else None
            if given is not None and given in self.catalog:
                item_id: int | None = given
                kind = "id"
                match = self.matcher.match(title)
                if match.item_id is not None and match.item_id != given:
                    self.stats.id_title_disagreements += 1
            else:
                if given is not None:
                    self.stats.unknown_subset_ids += 1
                match = self.matcher.match(title)
                item_id, kind = match.item_id, match.kind
            self.stats.titles_by_kind[kind] += 1
            if item_id is None:
                self.stats.unmatched_titles[title] = None
            elif item_id not in resolved:
                resolved.append(item_id)
        return tuple(resolved)

    def finish(self, query: Query) -> Query:
        self.stats.queries += 1
        self.stats.conditions += len(query.conditions)
        if not query.truth_item_ids:
            self.stats.queries_without_truth += 1
        return query

    # ----------------------------------------------------------------- records
    def condition_query(self, rec: Mapping[str, Any], index: int) -> Query:
        key = self.record_key(rec, index)
        conditions = self.conditions(rec, index)
        situational = self.text(rec, "situational_description_query", index, required=False)
        text = situational
        if self.type is QueryType.MISINFORMED:
            text = self.text(rec, "query", index, required=False) or situational
        if text is None:
            self.fail(index, "situational_description_query", "missing field")
        titles_field = self.keys["subset"]
        titles = self.title_list(self.get(rec, titles_field, index), index, titles_field[0])
        user = self.get(rec, "source_user", index, required=False)
        if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int))):
            self.fail(index, "source_user", f"expected a user id, got {_show(user)}")
        extra: dict[str, Any] = {"data_idx": rec.get("data_idx")}
        for name in ("direct_description_query", "multihop_info", "misinformed"):
            if name in rec:
                if name != "direct_description_query" and not _is_list_of_dicts(rec[name]):
                    self.fail(index, name, f"expected a list of objects, got {_show(rec[name])}")
                extra[name] = rec[name]
        query_id = self.claim_id(f"{self.domain}/{self.type.value}/{key}", index)
        # Resolved last: a record that fails validation leaves no trace in the title counts.
        truth_ids = self.truth(titles, self.get(rec, self.keys["subset_id"], index, required=False), index)
        return self.finish(
            Query(
                query_id=query_id,
                domain=self.domain,
                query_type=self.type,
                text=text,
                conditions=conditions,
                truth_titles=tuple(titles),
                truth_item_ids=truth_ids,
                source_users=(str(user).strip(),) if user is not None else (),
                extra=extra,
            )
        )

    def multi_queries(self, rec: Mapping[str, Any], index: int) -> list[Query]:
        """Interest-based and demographics records: one query per ``"query & ground true"`` entry."""
        key = self.record_key(rec, index)
        entries = self.get(rec, MULTI_QUERY_FIELD, index)
        if not isinstance(entries, list) or not entries:
            self.fail(index, MULTI_QUERY_FIELD, f"expected a non-empty list of entries, got {_show(entries)}")
        record_extra: dict[str, Any] = {}
        users: tuple[str, ...] = ()
        if self.type is QueryType.INTEREST_BASED:
            raw_users = self.get(rec, "source_users", index, required=False)
            if raw_users is not None:
                raw_users = raw_users if isinstance(raw_users, list) else [raw_users]
                if not all(isinstance(u, (str, int)) and not isinstance(u, bool) for u in raw_users):
                    self.fail(index, "source_users", f"expected a list of user ids, got {_show(raw_users)}")
                users = tuple(str(u).strip() for u in raw_users)
            shared = self.get(rec, self.keys["shared"], index, required=False)
            if shared is not None:
                record_extra["shared_titles"] = self.title_list(shared, index, self.keys["shared"][0])
        else:
            for name in ("group_type", "group"):
                record_extra[name] = self.get(rec, name, index, required=False)
            top = self.get(rec, self.keys["top"], index, required=False)
            if top is not None:
                if not isinstance(top, list) or not all(
                    isinstance(p, list) and p and isinstance(p[0], int) for p in top
                ):
                    self.fail(index, self.keys["top"][0], f"expected [[id, score], ...], got {_show(top)}")
                record_extra["top_item_ids"] = [p[0] for p in top]
            record_extra["data_idx"] = rec.get("data_idx")
        queries: list[Query] = []
        # Queries are numbered among the non-empty entries: the release has some ``{}`` entries, and the
        # benchmark's own evaluation numbers queries "<record>-<j>" after dropping them.
        j = -1
        for position, entry in enumerate(entries):
            where = f"{MULTI_QUERY_FIELD}[{position}]"
            if entry == {}:
                self.stats.empty_entries += 1
                continue
            j += 1
            try:
                if not isinstance(entry, dict):
                    self.fail(index, where, f"expected an object, got {_show(entry)}")
                text = self.text(entry, "query", index, where=f"{where}.")
                subset_field = self.keys["entry_subset"]
                raw = self.get(entry, subset_field, index, required=False)
                if raw is None:
                    self.fail(index, f"{where}.{subset_field[0]}", "missing field")
                titles = self.title_list(raw, index, f"{where}.{subset_field[0]}")
                reason = entry.get("reason")
                query_id = self.claim_id(f"{self.domain}/{self.type.value}/{key}/{j}", index)
                queries.append(
                    self.finish(
                        Query(
                            query_id=query_id,
                            domain=self.domain,
                            query_type=self.type,
                            text=text,
                            truth_titles=tuple(titles),
                            truth_item_ids=self.truth(titles, None, index),
                            source_users=users,
                            extra={**record_extra, "reason": reason if isinstance(reason, str) else None},
                        )
                    )
                )
            except _Skip as skip:
                self.stats.skipped_queries += 1
                self.note_skip(skip, f"query {j} of record {index}")
        return queries

    def read(self, records: list[Any]) -> list[Query]:
        queries: list[Query] = []
        parse = self.condition_query if self.type.is_condition_query else self.multi_queries
        for index, rec in enumerate(records):
            self.stats.records += 1
            try:
                if not isinstance(rec, dict):
                    self.fail(index, None, f"expected a JSON object, got {_show(rec)}")
                out = parse(rec, index)
            except _Skip as skip:
                self.stats.skipped_records += 1
                self.note_skip(skip, f"record {index}")
                continue
            queries.extend(out if isinstance(out, list) else [out])
        return queries


def _show(value: Any, limit: int = 60) -> str:
    text = f"{type(value).__name__} {json.dumps(value, ensure_ascii=False, default=str)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_list_of_dicts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def load_json_records(path: PathLike) -> list[Any]:
    """The top-level JSON list of a query file; :class:`RecBenchFormatError` when it is not one.

    Empty, truncated or otherwise invalid JSON names the line and column where parsing stopped.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RecBenchFormatError(path, f"not UTF-8 at byte {e.start}") from None
    if not text.strip():
        raise RecBenchFormatError(path, "empty file (expected a JSON list of records)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecBenchFormatError(
            path, f"invalid JSON (truncated or malformed) at column {e.colno}: {e.msg}", line=e.lineno
        ) from None
    if not isinstance(data, list):
        raise RecBenchFormatError(path, f"expected a JSON list of records, got {type(data).__name__}")
    return data


def read_query_file(
    path: PathLike,
    query_type: QueryType,
    matcher: TitleMatcher,
    *,
    domain: str = "movie",
    on_error: OnError = "raise",
    records: list[Any] | None = None,
) -> QueryFileResult:
    """Read one query file of ``query_type`` into :class:`Query` records.

    Args:
        path: The JSON file (named in errors).
        query_type: Which of the five layouts the file has.
        matcher: Catalog matcher used for ground-truth titles (its catalog also validates given ids).
        domain: ``"movie"`` or ``"book"``: part of the query ids and of the field names.
        on_error: ``"raise"`` a :class:`RecBenchFormatError` on a malformed record, or ``"skip"`` it
            (logged, counted in ``stats["skipped_records"]``/``["skipped_queries"]``).
        records: Already-parsed top-level list (the file is not read again); for :func:`load_release`.
    """
    path = Path(path)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if records is None:
        records = load_json_records(path)
    reader = _FileReader(path, query_type, domain, matcher, on_error)
    queries = reader.read(records)
    stats = reader.stats.to_dict()
    stats["ground_truth_titles"] = reader.stats.titles_summary()
    return QueryFileResult(queries=queries, stats=stats)


def catalog_from_query_records(
    records_by_type: Mapping[QueryType, list[Any]], domain: str
) -> dict[int, Item]:
    """Build a catalog from the ground truth of query files (for a domain without a catalog file).

    First every ``(id, title)`` pair of ``<domain>SubsetId``/``<domain>Subset`` lists of equal length;
    then every other ground-truth title, deduplicated by normalised name and year, under new ids above
    the largest id seen, in order of first appearance. Malformed records are ignored here; the query
    readers report them.
    """
    keys = _keys(domain)
    items: dict[int, Item] = {}
    by_name: dict[tuple[str, int | None], int] = {}
    loose_titles: list[str] = []

    def first(rec: Mapping[str, Any], names: tuple[str, ...]) -> Any:
        return next((rec[n] for n in names if n in rec), None)

    for query_type, records in records_by_type.items():
        for rec in records:
            if not isinstance(rec, dict):
                continue
            if query_type.is_condition_query:
                titles, ids = first(rec, keys["subset"]), first(rec, keys["subset_id"])
                if not isinstance(titles, list):
                    continue
                if isinstance(ids, list) and len(ids) == len(titles):
                    for item_id, title in zip(ids, titles):
                        if isinstance(item_id, int) and isinstance(title, str) and item_id not in items:
                            items[item_id] = Item(item_id, title)
                            by_name.setdefault((normalize_title(title), split_year(title)[1]), item_id)
                else:
                    loose_titles.extend(t for t in titles if isinstance(t, str))
            else:
                for entry in rec.get(MULTI_QUERY_FIELD) or []:
                    titles = first(entry, keys["entry_subset"]) if isinstance(entry, dict) else None
                    if isinstance(titles, list):
                        loose_titles.extend(t for t in titles if isinstance(t, str))
    next_id = max(items, default=0) + 1
    for title in loose_titles:
        name = (normalize_title(title), split_year(title)[1])
        if name[0] and name not in by_name:
            by_name[name] = next_id
            items[next_id] = Item(next_id, title.strip())
            next_id += 1
    return items


def user_histories(interactions: Interactions) -> dict[int, tuple[int, ...]]:
    """Each user's rated items in time order (ties keep file order): ``{user_id: (item_id, ...)}``."""
    if len(interactions) == 0:
        return {}
    order = np.lexsort((np.arange(len(interactions)), interactions.timestamps, interactions.user_ids))
    users = interactions.user_ids[order]
    items = interactions.item_ids[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    bounds = np.r_[starts, users.size]
    return {
        int(users[s]): tuple(items[s:e].tolist()) for s, e in zip(bounds[:-1], bounds[1:])
    }


def _domain_folder(root: Path, domain: str) -> Path:
    folder = root / domain
    if folder.is_dir():
        return folder
    known = [f"{domain}s.dat", *(t.file_name for t in QueryType)]
    if any((root / name).exists() for name in known):
        logger.info("%s has no %s/ folder but holds release files: read as that domain", root, domain)
        return root
    raise FileNotFoundError(f"no RecBench+ {domain} domain at {root}: expected the folder {folder}")


def load_release(
    root: PathLike,
    domain: str = "movie",
    *,
    triples_file: PathLike | None = None,
    on_error: OnError = "raise",
    match_threshold: float | None = None,
) -> Release:
    """Load one domain of a RecBench+-shaped release (real or synthetic) into a :class:`Release`.

    Args:
        root: Release folder holding ``<domain>/`` (a folder that directly holds the domain's files is
            accepted too).
        domain: ``"movie"`` or ``"book"``.
        triples_file: Extra ``item<TAB>relation<TAB>value`` file for the knowledge graph; default: the
            domain folder's ``kg_triples.tsv`` when present.
        on_error: ``"raise"`` on the first malformed file, record or triples line, or ``"skip"`` it
            (logged and counted in ``Release.stats``).
        match_threshold: Fuzzy title-matching threshold; default 0.8 for movies, 0.65 for books.

    Returns:
        The release; ``stats`` holds per-type counters, ground-truth resolution
        (``stats["ground_truth_titles"]``: overall and ``by_type``), the catalog source and KG counts.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    folder = _domain_folder(Path(root), domain)
    stats: dict[str, Any] = {"domain": domain, "folder": str(folder), "files": {}, "skipped_files": []}

    # Query files first: without a catalog file the catalog is built from them.
    raw: dict[QueryType, list[Any]] = {}
    if not any((folder / t.file_name).exists() for t in QueryType):
        raise FileNotFoundError(
            f"{folder} holds no query file: expected at least one of {[t.file_name for t in QueryType]}"
        )
    for query_type in QueryType:
        path = folder / query_type.file_name
        if not path.exists():
            logger.info("%s: no %s, %s queries skipped", folder, query_type.file_name, query_type.value)
            stats["files"][query_type.value] = "missing"
            continue
        try:
            raw[query_type] = load_json_records(path)
        except RecBenchFormatError as error:
            if on_error == "raise":
                raise
            logger.warning("skipped file: %s", error)
            stats["files"][query_type.value] = "skipped"
            stats["skipped_files"].append(str(error))
            continue
        if not raw[query_type]:
            logger.warning("%s holds no records (an empty JSON list): no %s queries", path, query_type.value)

    dat_stats: dict[str, dict[str, Any]] = stats.setdefault("dat_files", {})
    catalog_path = folder / f"{domain}s.dat"
    if catalog_path.exists():
        items = read_movies(catalog_path, on_error=on_error, stats=dat_stats.setdefault(catalog_path.name, {}))
        stats["catalog"] = {"source": catalog_path.name, "items": len(items)}
        if not items:
            raise RecBenchFormatError(catalog_path, "the catalog holds no item: nothing to recommend")
    else:
        items = catalog_from_query_records(raw, domain)
        logger.warning(
            "%s: no %s; catalog of %d items built from the query files", folder, catalog_path.name, len(items)
        )
        stats["catalog"] = {"source": "query files", "items": len(items)}
        if not items:
            raise RecBenchFormatError(folder, f"no {catalog_path.name} and the query files name no title: the "
                                      "catalog is empty, nothing to recommend")
    users_path = folder / "users.dat"
    users: dict[int, User] = {}
    if users_path.exists():
        users = read_users(users_path, on_error=on_error, stats=dat_stats.setdefault(users_path.name, {}))
    if not users:
        logger.warning("%s: %s: the release's user records (gender, age, occupation) are unavailable", folder,
                       "users.dat holds no user" if users_path.exists() else "no users.dat")
    ratings_path = folder / "ratings.dat"
    interactions = None
    if ratings_path.exists():
        interactions = read_ratings(ratings_path, on_error=on_error, stats=dat_stats.setdefault(ratings_path.name, {}))
    stats["users"] = len(users)
    stats["interactions"] = len(interactions) if interactions is not None else None

    threshold = match_threshold if match_threshold is not None else DEFAULT_THRESHOLDS.get(domain, 0.8)
    matcher = TitleMatcher(items.values(), threshold=threshold)
    histories = user_histories(interactions) if interactions is not None else {}

    queries: list[Query] = []
    per_type: dict[str, dict[str, Any]] = {}
    for query_type, records in raw.items():
        path = folder / query_type.file_name
        result = read_query_file(path, query_type, matcher, domain=domain, on_error=on_error, records=records)
        queries.extend(_with_history(result.queries, histories))
        _log_file_summary(path, result.stats)
        per_type[query_type.value] = result.stats.pop("ground_truth_titles")  # kept once, below
        stats["files"][query_type.value] = result.stats
    stats["queries_by_type"] = {t: s["queries"] for t, s in stats["files"].items() if isinstance(s, dict)}
    if not queries:
        logger.warning("%s: no query was read (files: %s)", folder, stats["files"])
    stats["ground_truth_titles"] = _merge_title_stats(per_type)

    extra_triples: list[Triple] = []
    kg_stats: dict[str, Any] = stats.setdefault("kg", {})
    triples_path = Path(triples_file) if triples_file is not None else folder / "kg_triples.tsv"
    if triples_file is not None or triples_path.exists():
        extra_triples = read_triples_file(triples_path, matcher, on_error=on_error, stats=kg_stats)
    triples = release_triples(items, queries, matcher=matcher, extra_triples=extra_triples, stats=kg_stats)
    return Release(
        domain=domain,
        items=items,
        users=users,
        queries=queries,
        triples=triples,
        interactions=interactions,
        matcher=matcher,
        stats=stats,
    )


def _with_history(queries: Iterable[Query], histories: Mapping[int, tuple[int, ...]]) -> list[Query]:
    """Attach the source user's history to single-user queries (shared tuples, no copies)."""
    if not histories:
        return list(queries)
    out = []
    for q in queries:
        if len(q.source_users) == 1 and q.source_users[0].isdigit():
            history = histories.get(int(q.source_users[0]))
            if history:
                q = dataclasses.replace(q, history_item_ids=history)
        out.append(q)
    return out


def _merge_title_stats(per_type: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    kinds = RESOLUTION_KINDS
    unmatched: dict[str, None] = {}
    for s in per_type.values():
        unmatched.update(dict.fromkeys(s["unmatched_titles"]))
    return {
        "total": sum(s["total"] for s in per_type.values()),
        "matched": sum(s["matched"] for s in per_type.values()),
        "unmatched": sum(s["unmatched"] for s in per_type.values()),
        "by_kind": {k: sum(s["by_kind"][k] for s in per_type.values()) for k in kinds},
        "unmatched_titles": list(unmatched),
        "by_type": dict(per_type),
    }


def _log_file_summary(path: Path, stats: Mapping[str, Any]) -> None:
    titles = stats["ground_truth_titles"]
    if stats["skipped_records"] or stats["skipped_queries"]:
        logger.warning(
            "%s: skipped %d records and %d queries (on_error='skip')",
            path, stats["skipped_records"], stats["skipped_queries"],
        )
    if titles["unmatched"]:
        logger.warning(
            "%s: %d of %d ground-truth titles match no catalog item (left out of truth_item_ids), e.g. %s",
            path, titles["unmatched"], titles["total"], titles["unmatched_titles"][:5],
        )
    if stats["id_title_disagreements"]:
        logger.warning(
            "%s: %d ground-truth ids whose title matches another catalog item (the id was kept)",
            path, stats["id_title_disagreements"],
        )
