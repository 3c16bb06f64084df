"""Typed records shared by every part of ReRec: items, users, queries and a loaded release.

These are the contracts between the readers (RecBench+ files or the embedded synthetic world), the task
builders, the graph rewards and the evaluation. They hold plain Python values only, so they pickle, hash
and compare cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class QueryType(str, Enum):
    """The five RecBench+ query types; the value is the name used in configs, metrics and file names."""

    EXPLICIT = "explicit"
    IMPLICIT = "implicit"
    MISINFORMED = "misinformed"
    INTEREST_BASED = "interest_based"
    DEMOGRAPHICS = "demographics"

    @property
    def file_name(self) -> str:
        """Name of this type's query file inside a RecBench+ domain folder."""
        return QUERY_FILE_NAMES[self]

    @property
    def is_condition_query(self) -> bool:
        """Explicit, implicit and misinformed queries carry hard (relation, value) conditions."""
        return self in (QueryType.EXPLICIT, QueryType.IMPLICIT, QueryType.MISINFORMED)


QUERY_FILE_NAMES: dict[QueryType, str] = {
    QueryType.EXPLICIT: "ExplicitQuery.json",
    QueryType.IMPLICIT: "ImplicitQuery.json",
    QueryType.MISINFORMED: "MisinformedQuery.json",
    QueryType.INTEREST_BASED: "InterestBasedQuery.json",
    QueryType.DEMOGRAPHICS: "UserBasedQuery.json",
}


@dataclass(frozen=True)
class Item:
    """One catalog item (a movie or a book).

    Attributes:
        item_id: Catalog id (MovieLens ``MovieID`` for movies).
        title: Title exactly as the catalog writes it, e.g. ``"Breakfast Club, The (1985)"``.
        genres: Genres from the catalog file (may be empty).
    """

    item_id: int
    title: str
    genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class User:
    """One MovieLens-style user (``users.dat``). ``age`` and ``occupation`` are the MovieLens codes."""

    user_id: int
    gender: str
    age: int
    occupation: int
    zip_code: str


@dataclass(frozen=True)
class Query:
    """One natural-language recommendation request with its ground truth.

    Attributes:
        query_id: Unique, stable id: ``"<domain>/<type>/<record index>"`` plus ``"/<j>"`` for the j-th
            query of a record that holds several (interest-based, demographics).
        domain: ``"movie"`` or ``"book"``.
        query_type: One of :class:`QueryType`.
        text: The request shown to the model.
        conditions: Hard ``(relation, value)`` conditions (condition queries; empty otherwise).
        truth_titles: Ground-truth titles as written in the query file.
        truth_item_ids: Catalog ids of the ground-truth titles that matched the catalog (same order,
            unmatched titles left out and counted by the reader).
        source_users: Users whose history produced the ground truth (ids as strings, as in the files).
        history_item_ids: The source user's history when known (for the optional history block).
        extra: Type-specific fields kept for inspection (``multihop_info``, ``misinformed``, ``reason``,
            ``group`` ...), JSON-serialisable.
    """

    query_id: str
    domain: str
    query_type: QueryType
    text: str
    conditions: tuple[tuple[str, str], ...] = ()
    truth_titles: tuple[str, ...] = ()
    truth_item_ids: tuple[int, ...] = ()
    source_users: tuple[str, ...] = ()
    history_item_ids: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Triple:
    """One knowledge-graph fact ``item --relation--> value`` (value is an attribute node's name)."""

    item_id: int
    relation: str
    value: str


@dataclass
class Interactions:
    """User–item interactions (``ratings.dat``) as parallel int64/float arrays of equal length."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])


@dataclass
class Release:
    """Everything loaded for one domain of a RecBench+-shaped release (real or synthetic).

    Attributes:
        domain: ``"movie"`` or ``"book"``.
        items: Catalog, item id -> :class:`Item`.
        users: User id -> :class:`User` (empty when the domain has no ``users.dat``).
        queries: All queries of every type found, in file order.
        triples: Item–attribute facts for the knowledge graph (from query conditions, catalog genres
            and an optional triples file).
        interactions: ``ratings.dat`` when present, else ``None``.
        matcher: The catalog title matcher the ground truth was matched with (a
            :class:`~rerec.data.matching.TitleMatcher`); every later match uses the same one.
        stats: Reader counters (skipped records, unmatched titles per type, ...), JSON-serialisable.
    """

    domain: str
    items: dict[int, Item]
    users: dict[int, User] = field(default_factory=dict)
    queries: list[Query] = field(default_factory=list)
    triples: list[Triple] = field(default_factory=list)
    interactions: Interactions | None = None
    matcher: Any = None
    stats: dict[str, Any] = field(default_factory=dict)
