"""Item–attribute graph: indexing, neighbourhoods, torch-geometric views and attribute weights."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from rerec.data.records import Item, Release, Triple
from rerec.graph.item_graph import ItemAttributeGraph

TRIPLES = [
    Triple(1, "Genre", "War"),
    Triple(1, "Starring", "Tom Hanks"),
    Triple(1, "Directed_by", "Steven Spielberg"),
    Triple(2, "Genre", "War"),
    Triple(2, "Starring", "Tom Hanks"),
    Triple(2, "Genre", "Drama"),
    Triple(2, "Genre", "Drama"),  # duplicate: merged
    Triple(3, "Genre", "Drama"),
    Triple(3, "Starring", "Tom Hanks"),
    Triple(4, "Genre", "Comedy"),
    Triple(4, "Directed_by", "Tom Hanks"),  # same person, other relation: another attribute
]
CATALOG = [1, 2, 3, 4, 5]  # item 5 has no triple


@pytest.fixture
def graph() -> ItemAttributeGraph:
    return ItemAttributeGraph.from_triples(TRIPLES, CATALOG)


def test_counts_and_neighbourhoods(graph: ItemAttributeGraph) -> None:
    assert graph.num_items == 5
    # War, Tom Hanks (Starring), Spielberg, Drama, Comedy, Tom Hanks (Directed_by)
    assert graph.num_attributes == 6
    assert graph.num_edges == 10
    assert graph.attributes_of(1) == {("Genre", "War"), ("Starring", "Tom Hanks"), ("Directed_by", "Steven Spielberg")}
    assert graph.attributes_of(4) == {("Genre", "Comedy"), ("Directed_by", "Tom Hanks")}
    assert graph.attributes_of(5) == set()  # in the catalog, no attribute
    assert graph.row_of(5) is not None
    assert graph.attributes_of(99) == set() and graph.row_of(99) is None
    assert graph.relations == ["Genre", "Starring", "Directed_by"]
    assert not graph.weighted and graph.attribute_weight(("Genre", "War")) == 1.0


def test_incidence_matches_neighbourhoods(graph: ItemAttributeGraph) -> None:
    dense = graph.incidence().to_dense()
    assert dense.shape == (5, 6)
    for item in CATALOG:
        row = graph.row_of(item)
        cols = set(torch.nonzero(dense[row]).flatten().tolist())
        assert {graph.attributes[c] for c in cols} == graph.attributes_of(item)


def test_hetero_data_has_one_edge_type_per_relation(graph: ItemAttributeGraph) -> None:
    data = graph.to_hetero_data()
    assert data["item"].num_nodes == 5 and data["attribute"].num_nodes == 6
    assert data["item"].item_id.tolist() == CATALOG
    assert set(data.edge_types) == {("item", r, "attribute") for r in ("Genre", "Starring", "Directed_by")}
    assert data["item", "Genre", "attribute"].edge_index.size(1) == 5
    assert data["item", "Starring", "attribute"].edge_index.size(1) == 3
    assert data["item", "Directed_by", "attribute"].edge_index.size(1) == 2
    genre_edges = data["item", "Genre", "attribute"].edge_index
    assert all(graph.attributes[c][0] == "Genre" for c in genre_edges[1].tolist())
    data.validate()


def test_catalog_none_uses_items_of_triples() -> None:
    graph = ItemAttributeGraph.from_triples(TRIPLES)
    assert sorted(graph.item_ids.tolist()) == [1, 2, 3, 4]


def test_bad_triples_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = TRIPLES + [Triple(77, "Genre", "War"), Triple(1, "Genre", "  "), Triple(1, "", "x")]
    with caplog.at_level(logging.WARNING, logger="rerec.graph.item_graph"):
        graph = ItemAttributeGraph.from_triples(bad, CATALOG)
    assert graph.num_edges == 10
    assert "skipped 2 triple(s) with an empty relation/value and 1 about items outside the catalog" in caplog.text


def test_inverse_frequency_weights(graph: ItemAttributeGraph) -> None:
    weighted = ItemAttributeGraph.from_triples(TRIPLES, CATALOG, weighting="inverse_frequency")
    assert weighted.weighted
    # 5 items; War is on 2 items, Tom Hanks (Starring) on 3, Spielberg on 1.
    assert weighted.attribute_weight(("Genre", "War")) == pytest.approx(math.log(1 + 5 / 2))
    assert weighted.attribute_weight(("Starring", "Tom Hanks")) == pytest.approx(math.log(1 + 5 / 3))
    assert weighted.attribute_weight(("Directed_by", "Steven Spielberg")) == pytest.approx(math.log(6))


def test_relation_weights_multiply() -> None:
    g = ItemAttributeGraph.from_triples(TRIPLES, CATALOG, relation_weights={"Genre": 0.5})
    assert g.attribute_weight(("Genre", "War")) == 0.5
    assert g.attribute_weight(("Starring", "Tom Hanks")) == 1.0
    g2 = ItemAttributeGraph.from_triples(
        TRIPLES, CATALOG, weighting="inverse_frequency", relation_weights={"Genre": 0.5}
    )
    assert g2.attribute_weight(("Genre", "War")) == pytest.approx(0.5 * math.log(3.5))
    with pytest.raises(ValueError, match="relation_weights"):
        ItemAttributeGraph.from_triples(TRIPLES, CATALOG, relation_weights={"Genre": 0.0})
    with pytest.raises(ValueError, match="weighting"):
        ItemAttributeGraph.from_triples(TRIPLES, CATALOG, weighting="tfidf")  # type: ignore[arg-type]


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="unique"):
        ItemAttributeGraph([1, 1], [("Genre", "War")], torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        ItemAttributeGraph([1], [("Genre", "War")], torch.tensor([[0], [3]]))
    with pytest.raises(ValueError, match="duplicate"):
        ItemAttributeGraph([1], [("Genre", "War")], torch.tensor([[0, 0], [0, 0]]))


def test_from_release() -> None:
    release = Release(
        domain="movie",
        items={i: Item(i, f"Movie {i} (2000)") for i in CATALOG},
        triples=list(TRIPLES),
    )
    graph = ItemAttributeGraph.from_release(release)
    assert graph.num_items == 5 and graph.attributes_of(3) == {("Genre", "Drama"), ("Starring", "Tom Hanks")}
