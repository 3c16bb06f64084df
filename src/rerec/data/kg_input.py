"""Item–attribute facts (:class:`~rerec.data.records.Triple`) from what a release provides.

Sources, in output order (duplicates keep their first occurrence):

1. catalog genres: ``(item, "Genre", genre)`` for each genre of the catalog file;
2. query conditions: every ground-truth item of a condition query has each of its conditions — that is
   how RecBench+ defines the ground truth (the source user's items meeting every condition);
3. ``multihop_info`` of implicit/misinformed queries: ``{movie, relation, person}`` says the referenced
   item has that relation to that person. A misinformed record's planted fact (its ``misinformed``
   entry's ``person``) is never taken as a fact; its ``"original person"`` is;
4. an optional triples file ``item<TAB>relation<TAB>value`` (:func:`read_triples_file`).

The graph module consumes the list; :func:`item_attributes` gives the per-item view used to check
conditions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from rerec.data.matching import TitleMatcher
from rerec.data.movielens import PathLike, RecBenchFormatError, decode_line
from rerec.data.records import Item, Query, Triple

logger = logging.getLogger("rerec.data")

_HEADER_FIRST = {"item", "item_id", "itemid", "head", "movie", "book"}
_HOP_ITEM_KEYS = ("movie", "book", "item")


def read_triples_file(
    path: PathLike,
    matcher: TitleMatcher,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    stats: dict[str, Any] | None = None,
) -> list[Triple]:
    """Read ``item<TAB>relation<TAB>value`` lines into triples.

    ``item`` is a catalog id when it is all digits, else a title resolved by ``matcher``. Blank lines and
    lines starting with ``#`` are ignored, and so is a header line (first field ``item``/``item_id``/
    ``head``). Encoding as in the ``.dat`` files: UTF-8, per-line latin-1 fallback.

    Args:
        path: The TSV file.
        matcher: Catalog matcher (its catalog also validates ids).
        on_error: ``"raise"`` a :class:`RecBenchFormatError` naming the line, or ``"skip"`` the line
            (logged, counted in ``stats["file_skipped_lines"]``).
        stats: Dict updated with ``triples_file``, ``file_triples`` and ``file_skipped_lines``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"triples file not found: {path}")
    triples: list[Triple] = []
    skipped = 0
    first_content = True
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        line = decode_line(raw.rstrip(b"\r")).lstrip("\ufeff")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("\t")]
        is_header = first_content and len(parts) == 3 and parts[0].casefold() in _HEADER_FIRST
        first_content = False
        if is_header:
            continue
        try:
            triples.append(_parse_triple(path, number, parts, matcher))
        except RecBenchFormatError as error:
            if on_error == "raise":
                raise
            skipped += 1
            logger.warning("skipped triples line: %s", error)
    if stats is not None:
        stats.update(triples_file=str(path), file_triples=len(triples), file_skipped_lines=skipped)
    return triples


def _parse_triple(path: Path, number: int, parts: list[str], matcher: TitleMatcher) -> Triple:
    if len(parts) != 3:
        raise RecBenchFormatError(
            path, f"expected 3 tab-separated fields (item, relation, value), got {len(parts)}", line=number
        )
    item, relation, value = parts
    for name, text in (("item", item), ("relation", relation), ("value", value)):
        if not text:
            raise RecBenchFormatError(path, "empty", line=number, field=name)
    if item.isdigit():
        item_id = int(item)
        if item_id not in matcher.titles:
            raise RecBenchFormatError(path, f"unknown item id {item_id}", line=number, field="item")
    else:
        match = matcher.match(item)
        if match.item_id is None:
            raise RecBenchFormatError(
                path, f"title {item!r} matches no catalog item", line=number, field="item"
            )
        item_id = match.item_id
    return Triple(item_id, relation, value)


def release_triples(
    items: Mapping[int, Item],
    queries: Iterable[Query],
    *,
    matcher: TitleMatcher | None = None,
    extra_triples: Iterable[Triple] = (),
    stats: dict[str, Any] | None = None,
) -> list[Triple]:
    """All item–attribute facts of a release, deduplicated (see the module docstring for the sources).

    Args:
        items: The catalog (genres come from it).
        queries: The release's queries (conditions, ``multihop_info``, ``misinformed`` in ``extra``).
        matcher: Resolves the titles named in ``multihop_info``; built from ``items`` when omitted.
        extra_triples: Facts from a triples file, appended last.
        stats: Dict updated with per-source counts (``from_genres``, ``from_conditions``,
            ``from_multihop``, ``unmatched_multihop_items``, ``total``).
    """
    seen: dict[Triple, None] = {}
    counts = {"from_genres": 0, "from_conditions": 0, "from_multihop": 0, "from_file": 0}
    unmatched_hops = malformed_hops = 0

    def add(triple: Triple, source: str) -> None:
        if triple not in seen:
            seen[triple] = None
            counts[source] += 1

    for item in items.values():
        for genre in item.genres:
            add(Triple(item.item_id, "Genre", genre), "from_genres")
    hop_queries: list[Query] = []
    for query in queries:
        if not query.query_type.is_condition_query:
            continue
        for item_id in query.truth_item_ids:
            for relation, value in query.conditions:
                add(Triple(item_id, relation, value), "from_conditions")
        if query.extra.get("multihop_info") or query.extra.get("misinformed"):
            hop_queries.append(query)
    if hop_queries:
        matcher = matcher or TitleMatcher(items.values())
        for query in hop_queries:
            facts, malformed = _hop_facts(query)
            malformed_hops += malformed
            for title, relation, person in facts:
                match = matcher.match(title)
                if match.item_id is None:
                    unmatched_hops += 1
                    continue
                add(Triple(match.item_id, relation, person), "from_multihop")
    for triple in extra_triples:
        add(triple, "from_file")
    if stats is not None:
        stats.update(
            counts,
            unmatched_multihop_items=unmatched_hops,
            malformed_multihop_entries=malformed_hops,
            total=len(seen),
        )
    if unmatched_hops or malformed_hops:
        logger.warning(
            "multihop facts left out: %d name an item that matches no catalog item, %d entries are malformed",
            unmatched_hops, malformed_hops,
        )
    return list(seen)


def _hop_facts(query: Query) -> tuple[list[tuple[str, str, str]], int]:
    """True ``(item title, relation, person)`` facts of a query's ``multihop_info``/``misinformed``, and
    the number of malformed entries."""
    planted: set[tuple[str, str, str]] = set()
    facts: list[tuple[str, str, str]] = []
    malformed = 0
    for entry in query.extra.get("misinformed") or []:
        fact, original = _fact(entry, "person"), _fact(entry, "original person")
        if fact:
            planted.add(fact)
        if original:
            facts.append(original)
        malformed += not (fact and original)
    for entry in query.extra.get("multihop_info") or []:
        fact = _fact(entry, "person")
        if fact and fact not in planted:
            facts.append(fact)
        malformed += fact is None
    return facts, malformed


def _fact(entry: Any, person_key: str) -> tuple[str, str, str] | None:
    """``(title, relation, person)`` from one ``{movie, relation, person}`` object; ``None`` if malformed."""
    if not isinstance(entry, dict):
        return None
    title = next((entry[k] for k in _HOP_ITEM_KEYS if isinstance(entry.get(k), str)), None)
    relation, person = entry.get("relation"), entry.get(person_key)
    if not (title and isinstance(relation, str) and relation.strip()):
        return None
    if isinstance(person, (int, float)) and not isinstance(person, bool):
        person = str(person)
    if not isinstance(person, str) or not person.strip():
        return None
    return title.strip(), relation.strip(), person.strip()


def item_attributes(triples: Iterable[Triple]) -> dict[int, set[tuple[str, str]]]:
    """``{item_id: {(relation, value), ...}}``: the per-item view of the facts (condition checks)."""
    out: dict[int, set[tuple[str, str]]] = {}
    for t in triples:
        out.setdefault(t.item_id, set()).add((t.relation, t.value))
    return out
