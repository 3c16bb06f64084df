"""The item–attribute graph: catalog items linked to the attribute values the knowledge graph gives them.

An *attribute node* is a ``(relation, value)`` pair such as ``("Starring", "Tom Hanks")`` or
``("Genre", "War")``. Keeping the relation in the node makes "Tom Hanks as an actor" and "Tom Hanks as a
director" different attributes, which is how the queries state their conditions. ``A(x)``, the
attribute neighbourhood of item ``x`` used by the Query Alignment Score (:mod:`rerec.graph.alignment`),
is the set of attribute nodes linked to ``x``.

Two views of the same edges:

- :meth:`ItemAttributeGraph.to_hetero_data`: a torch-geometric ``HeteroData`` with node types ``item`` and
  ``attribute`` and one edge type ``("item", relation, "attribute")`` per relation;
- :meth:`ItemAttributeGraph.incidence`: the item × attribute sparse incidence matrix (CSR, rows sorted)
  that the batched scorer (:mod:`rerec.graph.alignment`) reads.

Optional attribute weights (off by default) let QAS count a shared rare attribute (a cinematographer)
more than a shared common one (the genre "Drama"); see :meth:`ItemAttributeGraph.from_triples`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import torch
from torch_geometric.data import HeteroData

from rerec.data.records import Release, Triple

log = logging.getLogger(__name__)

Attribute = tuple[str, str]
Weighting = Literal["none", "inverse_frequency"]


class ItemAttributeGraph:
    """Bipartite item–attribute graph with optional per-attribute weights (CPU tensors).

    Build it with :meth:`from_triples` (or :meth:`from_release`); the constructor takes the already
    indexed arrays.

    Args:
        item_ids: Catalog id of every item row, unique (row ``i`` is item ``item_ids[i]``).
        attributes: The ``(relation, value)`` of every attribute column, unique.
        edge_index: ``(2, E)`` int64: item rows (first line) linked to attribute columns (second line),
            without duplicates.
        attribute_weights: ``(num_attributes,)`` positive float weights, or ``None`` for the unweighted
            graph (every attribute counts 1).

    Attributes:
        edge_index: The edges sorted by (item row, attribute column), i.e. CSR order.
        crow: CSR row pointers of ``edge_index``: item row ``r``'s attributes are
            ``edge_index[1, crow[r]:crow[r + 1]]``.
    """

    def __init__(
        self,
        item_ids: Sequence[int] | torch.Tensor,
        attributes: Sequence[Attribute],
        edge_index: torch.Tensor,
        attribute_weights: torch.Tensor | None = None,
    ) -> None:
        self.item_ids = torch.as_tensor(item_ids, dtype=torch.long).reshape(-1)
        self.attributes: list[Attribute] = [(str(r), str(v)) for r, v in attributes]
        if torch.unique(self.item_ids).numel() != self.item_ids.numel():
            raise ValueError("item_ids must be unique")
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("attributes must be unique (relation, value) pairs")
        edge_index = torch.as_tensor(edge_index, dtype=torch.long)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        if edge_index.numel() and (
            edge_index[0].min() < 0
            or edge_index[0].max() >= self.num_items
            or edge_index[1].min() < 0
            or edge_index[1].max() >= self.num_attributes
        ):
            raise ValueError("edge_index refers to an item row or attribute column out of range")
        # Row-major order (item, attribute): the sorted key array doubles as a membership index.
        keys = torch.unique(edge_index[0] * max(self.num_attributes, 1) + edge_index[1])
        if keys.numel() != edge_index.size(1):
            raise ValueError("edge_index holds duplicate (item, attribute) edges")
        self.edge_index = torch.stack((keys // max(self.num_attributes, 1), keys % max(self.num_attributes, 1)))
        if attribute_weights is not None:
            attribute_weights = torch.as_tensor(attribute_weights, dtype=torch.float32).reshape(-1)
            if attribute_weights.numel() != self.num_attributes:
                raise ValueError(
                    f"attribute_weights has {attribute_weights.numel()} entries for "
                    f"{self.num_attributes} attributes"
                )
            if bool((attribute_weights <= 0).any()) or not bool(torch.isfinite(attribute_weights).all()):
                raise ValueError("attribute_weights must be finite and > 0")
        self.attribute_weights = attribute_weights
        counts = torch.bincount(self.edge_index[0], minlength=self.num_items)
        self.crow = torch.cat((torch.zeros(1, dtype=torch.long), counts.cumsum(0)))  # CSR row pointers
        self._row_of = {int(i): r for r, i in enumerate(self.item_ids.tolist())}
        self._attribute_index = {a: c for c, a in enumerate(self.attributes)}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_triples(
        cls,
        triples: Iterable[Triple],
        item_ids: Iterable[int] | None = None,
        *,
        weighting: Weighting = "none",
        relation_weights: Mapping[str, float] | None = None,
    ) -> ItemAttributeGraph:
        """Build the graph from knowledge-graph facts.

        Args:
            triples: ``item --relation--> value`` facts; duplicates are merged. A triple with an empty
                relation or value, or (when ``item_ids`` is given) about an item outside the catalog, is
                skipped, counted and logged once.
            item_ids: The catalog. Every catalog item gets a row, also those without any triple (their
                neighbourhood is empty). ``None``: the items named by the triples.
            weighting: ``"none"`` (default): every attribute weighs 1, QAS counts shared attributes.
                ``"inverse_frequency"``: attribute ``a`` weighs ``log(1 + num_items / df(a))`` with
                ``df(a)`` the number of items having it, so rare shared attributes count more.
            relation_weights: Optional multiplier per relation name (relations not listed: 1.0), e.g.
                ``{"Genre": 0.5}``; combined with ``weighting`` by product.

        Returns:
            The graph; ``attribute_weights`` is ``None`` unless ``weighting`` or ``relation_weights`` asks
            for weights.
        """
        if weighting not in ("none", "inverse_frequency"):
            raise ValueError(f"weighting must be 'none' or 'inverse_frequency', got {weighting!r}")
        catalog: list[int] | None = None if item_ids is None else [int(i) for i in item_ids]
        known = None if catalog is None else set(catalog)
        rows: dict[int, int] = {} if catalog is None else {i: r for r, i in enumerate(dict.fromkeys(catalog))}
        columns: dict[Attribute, int] = {}
        edges: set[tuple[int, int]] = set()
        skipped_empty = skipped_unknown = 0
        for triple in triples:
            relation, value = str(triple.relation).strip(), str(triple.value).strip()
            if not relation or not value:
                skipped_empty += 1
                continue
            item = int(triple.item_id)
            if known is not None and item not in known:
                skipped_unknown += 1
                continue
            row = rows.setdefault(item, len(rows))
            column = columns.setdefault((relation, value), len(columns))
            edges.add((row, column))
        if skipped_empty or skipped_unknown:
            log.warning(
                "item-attribute graph: skipped %d triple(s) with an empty relation/value and %d about "
                "items outside the catalog",
                skipped_empty,
                skipped_unknown,
            )
        edge_index = torch.tensor(sorted(edges), dtype=torch.long).reshape(-1, 2).t()
        attributes = list(columns)
        weights = _attribute_weights(attributes, edge_index, len(rows), weighting, relation_weights)
        return cls(list(rows), attributes, edge_index, weights)

    @classmethod
    def from_release(
        cls,
        release: Release,
        *,
        weighting: Weighting = "none",
        relation_weights: Mapping[str, float] | None = None,
    ) -> ItemAttributeGraph:
        """The graph of a loaded release: its ``triples`` over its catalog (see :meth:`from_triples`)."""
        return cls.from_triples(
            release.triples, release.items.keys(), weighting=weighting, relation_weights=relation_weights
        )

    # ------------------------------------------------------------------ queries
    @property
    def num_items(self) -> int:
        """Number of item rows (the catalog, including items without attributes)."""
        return int(self.item_ids.numel())

    @property
    def num_attributes(self) -> int:
        """Number of distinct ``(relation, value)`` attribute nodes."""
        return len(self.attributes)

    @property
    def num_edges(self) -> int:
        """Number of item–attribute links."""
        return int(self.edge_index.size(1))

    @property
    def weighted(self) -> bool:
        """Whether attribute weights are set (weighted QAS)."""
        return self.attribute_weights is not None

    @property
    def relations(self) -> list[str]:
        """Relation names in first-seen order."""
        return list(dict.fromkeys(r for r, _ in self.attributes))

    def row_of(self, item_id: int) -> int | None:
        """Row of a catalog id, ``None`` when the item is not in the graph."""
        return self._row_of.get(int(item_id))

    def attributes_of(self, item_id: int) -> set[Attribute]:
        """``A(item)``: the item's ``(relation, value)`` attributes; empty for an unknown item."""
        row = self.row_of(item_id)
        if row is None:
            return set()
        cols = self.edge_index[1, int(self.crow[row]) : int(self.crow[row + 1])].tolist()
        return {self.attributes[c] for c in cols}

    def attribute_weight(self, attribute: Attribute) -> float:
        """Weight of one attribute (1.0 when the graph is unweighted); ``KeyError`` when unknown."""
        column = self._attribute_index[attribute]
        return 1.0 if self.attribute_weights is None else float(self.attribute_weights[column])

    # ------------------------------------------------------------------ tensor views
    def incidence(self) -> torch.Tensor:
        """Item × attribute incidence as a ``torch.sparse_csr_tensor`` of ones (rows = item rows)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                self.crow.clone(),
                self.edge_index[1].clone(),
                torch.ones(self.num_edges),
                size=(self.num_items, self.num_attributes),
                check_invariants=True,
            )

    def to_hetero_data(self) -> HeteroData:
        """torch-geometric view: node types ``item``/``attribute``, one edge type per relation.

        ``data["item"].item_id`` holds the catalog ids, ``data["attribute"].relation`` the relation index
        (into :attr:`relations`) of every attribute node and ``data["attribute"].weight`` the weights when
        set. Edges go ``("item", relation, "attribute")``; add reverse edges with
        ``torch_geometric.transforms.ToUndirected()`` when message passing needs them.
        """
        data = HeteroData()
        data["item"].num_nodes = self.num_items
        data["item"].item_id = self.item_ids.clone()
        relations = self.relations
        relation_index = {r: k for k, r in enumerate(relations)}
        attr_relation = torch.tensor([relation_index[r] for r, _ in self.attributes], dtype=torch.long)
        data["attribute"].num_nodes = self.num_attributes
        data["attribute"].relation = attr_relation
        if self.attribute_weights is not None:
            data["attribute"].weight = self.attribute_weights.clone()
        edge_relation = attr_relation[self.edge_index[1]]
        for k, relation in enumerate(relations):
            data["item", relation, "attribute"].edge_index = self.edge_index[:, edge_relation == k].clone()
        return data

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(items={self.num_items}, attributes={self.num_attributes}, "
            f"edges={self.num_edges}, relations={len(self.relations)}, weighted={self.weighted})"
        )


def _attribute_weights(
    attributes: list[Attribute],
    edge_index: torch.Tensor,
    num_items: int,
    weighting: Weighting,
    relation_weights: Mapping[str, float] | None,
) -> torch.Tensor | None:
    """Per-attribute weights for :meth:`ItemAttributeGraph.from_triples`; ``None`` when unweighted."""
    if weighting == "none" and not relation_weights:
        return None
    weights = torch.ones(len(attributes), dtype=torch.float64)
    if weighting == "inverse_frequency":
        df = torch.bincount(edge_index[1], minlength=len(attributes)).to(torch.float64)
        # log(1 + N/df) > 0 for every attribute, so even an attribute every item has keeps a weight.
        weights = torch.log1p(num_items / df.clamp(min=1.0))
    if relation_weights:
        for relation, w in relation_weights.items():
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
                raise ValueError(f"relation_weights[{relation!r}] must be a finite number > 0, got {w!r}")
        factor = torch.tensor([float(relation_weights.get(r, 1.0)) for r, _ in attributes], dtype=torch.float64)
        weights = weights * factor
    return weights.to(torch.float32)
