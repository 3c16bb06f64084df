"""The ``official`` protocol: RecBench+'s own evaluation script, reproduced rule for rule, quirks included.

Use it to put a model next to the published numbers; use the ``corrected`` protocol
(:mod:`rerec.eval.corrected`) to know how good its answers are. Each rule below is what the
benchmark's script does; the quirks (marked *quirk*) are kept on purpose, and docs/recbench-scoring.md
works through each on real queries.

1. **Parts.** The raw answer is split on ``[SEP]``. Each part is stripped of spaces, then of any
   single quotes at its ends, then of any double quotes at its ends, then of a trailing ``" (YYYY)"``
   (after one more strip of spaces). *Quirk:* empty parts are kept (a trailing ``[SEP]`` adds one),
   and they count in precision's denominator.
2. **Cut-off.** ``k`` = 0 keeps every part; ``k`` > 0 keeps the first k and pads with the placeholder
   ``"none"`` up to k (a padded part is a miss that counts in precision's denominator).
3. **Title match.** Each part is replaced by the first ground-truth title, in ground-truth order, whose
   ``difflib.SequenceMatcher`` ratio with it is ≥ 0.8 (0.65 for books). *Quirk:* the ground-truth title
   keeps its year while the part lost its own, so a title shorter than 14 characters can never match
   (``"Clerks"`` vs ``"Clerks (1994)"``: 0.63): such ground-truth titles are *unreachable*
   (:func:`unreachable`). *Quirk:* the comparison is case- and article-sensitive (``"The Breakfast
   Club"`` vs ``"Breakfast Club, The (1985)"``: 0.64).
4. **Catalog look-up** (condition queries: explicit, implicit, misinformed). Each part (after rule 2)
   is looked up as a catalog item: a title equal to it (the catalog's titles without their year, ``"``
   written ``'``), else the first title that contains it (case-sensitive). *Quirk:* an empty part is
   contained in every title and finds the catalog's first item. Recall, precision and NDCG are each the
   maximum of the title-based score (rule 3) and the same score on these ids against ``movieSubsetId``.
5. **Metrics.** hits = ground-truth entries (duplicates included) present in the list;
   recall = hits / |truth|; precision = hits / number of parts; NDCG = Σ over parts of rel/log2(rank+1)
   over the ideal DCG of |truth| hits. *Quirk:* a repeated hit adds to the DCG each time (NDCG can
   exceed 1) while it counts once in recall and precision; the ideal DCG ignores k.
6. **FTR** = 1 when the raw answer has no ``[SEP]``. *Quirk:* a one-title answer is a failure, yet its
   title is still scored.
7. **Condition satisfaction** (condition queries). Over the parts found in the catalog (repeats
   included): the non-ground-truth items that satisfy every condition in the knowledge graph, plus the
   ground-truth ids found, over the number of parts found; −1 when none was found.
   ``existence_in_catalog_ratio`` = parts found / number of parts.
8. **Means** leave out every −1 value (:func:`mean_without_missing`).

What is not reproduced: the script looks items up in a Neo4j knowledge graph; here the catalog file is
that graph's item list (its titles without the year) and the release's facts are its edges
(:func:`rerec.data.kg_input.release_triples`), and "the first title that contains the part" is the first in
catalog order (Neo4j's order is unspecified). A prediction whose id is unknown is an error here (the
script prints "not found" and records the previous query's scores again).
"""

from __future__ import annotations

import bisect
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rerec.data.records import Item
from rerec.data.tasks import Attributes, satisfies

SEP = "[SEP]"
PLACEHOLDER = "none"  # what the script pads a short list with
_YEAR = re.compile(r"\s\(\d{4}\)$")


@dataclass(frozen=True)
class OfficialTruth:
    """What the script reads of one query.

    Attributes:
        titles: The ground-truth titles as written (``movieSubset`` or an entry's ``"movie subset"``).
        ids: ``movieSubsetId`` of a condition query as written; ``None`` for other queries.
        conditions: ``sharedRelationships`` of a condition query; ``None`` for other queries.
    """

    titles: tuple[str, ...]
    ids: tuple[Any, ...] | None = None
    conditions: tuple[tuple[str, str], ...] | None = None

    @property
    def is_condition(self) -> bool:
        return self.conditions is not None


def parts(response: str, k: int = 0) -> list[str]:
    """Rules 1 and 2: the cleaned parts of a raw answer, cut and padded to ``k`` (0: all)."""
    out = [_YEAR.sub("", p.strip().strip("'").strip('"').strip()).strip() for p in response.split(SEP)]
    if k:
        out = out[:k] + [PLACEHOLDER] * (k - len(out[:k]))
    return out


def similar(a: str, b: str, threshold: float) -> bool:
    """The script's title test: ``difflib.SequenceMatcher(None, a, b).ratio() >= threshold``."""
    return difflib.SequenceMatcher(None, a, b).ratio() >= threshold


def match_to_truth(answer_parts: Sequence[str], truth_titles: Sequence[str], threshold: float) -> list[str]:
    """Rule 3: each part replaced by the first ground-truth title it is similar to (else kept)."""
    return [next((t for t in truth_titles if similar(p, t, threshold)), p) for p in answer_parts]


def unreachable(truth_titles: Sequence[str], threshold: float) -> int:
    """Ground-truth titles that not even their own title, written as an answer, can match (rule 3)."""
    return sum(not similar(parts(t)[0], t, threshold) for t in truth_titles)


def _hits(recommended: Sequence[Any], truth: Sequence[Any]) -> int:
    return sum(1 for item in truth if item in recommended)


def recall(recommended: Sequence[Any], truth: Sequence[Any]) -> float:
    """Ground-truth entries present in the list / |truth| (0 for empty truth)."""
    return _hits(recommended, truth) / len(truth) if truth else 0.0


def precision(recommended: Sequence[Any], truth: Sequence[Any]) -> float:
    """Ground-truth entries present in the list / list length (0 for an empty list)."""
    return _hits(recommended, truth) / len(recommended) if recommended else 0.0


def _dcg(relevance: Sequence[int]) -> float:
    return sum(rel / math.log2(rank + 2) for rank, rel in enumerate(relevance))


def ndcg(recommended: Sequence[Any], truth: Sequence[Any]) -> float:
    """DCG of the list (every hit counts, repeats too) / DCG of |truth| hits (0 for empty truth)."""
    ideal = _dcg([1] * len(truth))
    return _dcg([1 if item in truth else 0 for item in recommended]) / ideal if ideal else 0.0


class CatalogLookup:
    """Rule 4: a part → catalog id by equal title, else by the first title containing it.

    Args:
        items: The catalog; its titles are compared without their trailing year, in catalog order.
    """

    def __init__(self, items: Mapping[int, Item]) -> None:
        names = [(item_id, _YEAR.sub("", item.title).strip()) for item_id, item in items.items()]
        self._exact: dict[str, int] = {}
        for item_id, name in names:
            self._exact.setdefault(name, item_id)
        # "First title containing the part" as one str.find over the titles joined by NULs (no title
        # holds one), instead of a Python loop over the catalog for each part.
        self._ids = [item_id for item_id, _ in names]
        self._starts: list[int] = []
        offset = 0
        for _, name in names:
            self._starts.append(offset)
            offset += len(name) + 1
        self._joined = "\0".join(name.replace("\0", " ") for _, name in names)

    def __call__(self, part: str) -> int | None:
        name = _YEAR.sub("", part).strip().replace('"', "'")
        found = self._exact.get(name)
        if found is not None:
            return found
        at = self._joined.find(name) if "\0" not in name and self._ids else -1
        return None if at < 0 else self._ids[bisect.bisect_right(self._starts, at) - 1]


def score(
    response: str,
    truth: OfficialTruth,
    *,
    k: int = 0,
    threshold: float = 0.8,
    lookup: CatalogLookup | None = None,
    attributes: Attributes | None = None,
) -> dict[str, Any]:
    """Score one raw answer by the script's rules (see the module docstring).

    Args:
        response: The model's raw text.
        truth: The query's ground truth as the script reads it.
        k: 0 for every part, else the first k parts padded to k.
        threshold: Title-match threshold (0.8 movies, 0.65 books).
        lookup: Catalog look-up; needed for condition queries.
        attributes: The knowledge graph's facts per item; needed for condition queries.

    Returns:
        ``ndcg``, ``recall``, ``precision``, ``ftr`` (1.0/0.0), ``parts`` (after rules 1–2) and
        ``unreachable_truth``; for condition queries also ``satisfied_ratio`` (−1 when no part was found
        in the catalog) and ``existence_in_catalog_ratio``.
    """
    answer = parts(response, k)
    matched = match_to_truth(answer, truth.titles, threshold)
    result: dict[str, Any] = {
        "ndcg": ndcg(matched, truth.titles),
        "recall": recall(matched, truth.titles),
        "precision": precision(matched, truth.titles),
        "ftr": 0.0 if SEP in response else 1.0,
    }
    if truth.is_condition:
        if lookup is None or attributes is None:
            raise ValueError("condition queries need the catalog look-up and the knowledge graph")
        ids = [lookup(p) for p in answer]
        truth_ids = list(truth.ids or ())
        result["ndcg"] = max(result["ndcg"], ndcg(ids, truth_ids))
        result["recall"] = max(result["recall"], recall(ids, truth_ids))
        result["precision"] = max(result["precision"], precision(ids, truth_ids))
        found = [i for i in ids if i is not None]
        satisfied = sum(1 for i in ids if i not in truth_ids and i and satisfies(attributes, i, truth.conditions or ()))
        satisfied += _hits(ids, truth_ids)
        result["satisfied_ratio"] = satisfied / len(found) if found else -1.0
        result["existence_in_catalog_ratio"] = len(found) / len(answer)
    result["parts"] = answer
    result["unreachable_truth"] = unreachable(truth.titles, threshold)
    return result


def mean_without_missing(values: Sequence[float]) -> float | None:
    """Rule 8: the mean of the values other than −1; ``None`` when none is left."""
    kept = [v for v in values if v != -1]
    return sum(kept) / len(kept) if kept else None
