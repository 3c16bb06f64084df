"""The embedded synthetic world (``rerec.data.synthetic``), written to disk and read back like the release.

The checks re-derive the ground truth from the written files themselves (``ratings.dat`` histories and
``kg_triples.tsv`` facts), so they test what the readers and the trainer will actually see.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

import rerec.data.synthetic as synthetic
from rerec.data.matching import TitleMatcher
from rerec.data.recbench import load_release
from rerec.data.records import QueryType, Release
from rerec.data.synthetic import SyntheticWorldConfig, write_world

SMALL = dict(
    num_items=300, num_users=60, num_explicit=40, num_implicit=20, num_misinformed=20, num_interest_records=8
)
CONDITION_FILES = ("ExplicitQuery.json", "ImplicitQuery.json", "MisinformedQuery.json")
ALL_FILES = (
    "movies.dat", "users.dat", "ratings.dat", "kg_triples.tsv", "world.json", *CONDITION_FILES,
    "InterestBasedQuery.json", "UserBasedQuery.json",
)
CATALOG_LINE = re.compile(r"^(\d+)::(.+ \((\d{4})\))::([^:]+)$")
MOVED_ARTICLE = re.compile(r"^(.*), (The|A) \((\d{4})\)$")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    write_world(root, SyntheticWorldConfig(seed=0, **SMALL))
    return root


@pytest.fixture(scope="module")
def release(world: Path) -> Release:
    return load_release(world, "movie")


@pytest.fixture(scope="module")
def files(world: Path) -> dict[str, object]:
    """The world parsed straight from disk: catalog, histories, KG facts and query records."""
    folder = world / "movie"
    catalog: dict[int, str] = {}
    for line in (folder / "movies.dat").read_text(encoding="utf-8").splitlines():
        m = CATALOG_LINE.match(line)
        assert m, f"malformed catalog line {line!r}"
        catalog[int(m.group(1))] = m.group(2)
    histories: dict[str, list[int]] = defaultdict(list)
    for line in (folder / "ratings.dat").read_text().splitlines():
        user, item, _rating, _ts = line.split("::")
        histories[user].append(int(item))
    kg: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for line in (folder / "kg_triples.tsv").read_text(encoding="utf-8").splitlines():
        item, relation, value = line.split("\t")
        kg[int(item)].add((relation, value))
    records = {name: json.loads((folder / name).read_text(encoding="utf-8")) for name in ALL_FILES[5:]}
    return {"catalog": catalog, "histories": histories, "kg": kg, "records": records}


def _natural(catalog_title: str) -> str:
    """Inverse of the MovieLens article move: "Silent River, The (1987)" -> "The Silent River (1987)"."""
    m = MOVED_ARTICLE.match(catalog_title)
    return f"{m.group(2)} {m.group(1)} ({m.group(3)})" if m else catalog_title


def test_catalog_and_graph_shape(files: dict, release: Release) -> None:
    catalog, kg = files["catalog"], files["kg"]
    assert len(catalog) >= 300 and len(release.items) == len(catalog)
    assert all(re.search(r" \((19|20)\d\d\)$", t) for t in catalog.values())  # every title has a year
    assert len(set(catalog.values())) == len(catalog)
    relations = {r for facts in kg.values() for r, _ in facts}
    assert len(relations) >= 5
    assert set(kg) == set(catalog)  # every item has facts
    # catalog genres (movies.dat) agree with the KG's Genre facts
    for item in release.items.values():
        assert set(item.genres) == {v for r, v in kg[item.item_id] if r == "Genre"}


def test_all_five_query_types_with_valid_truth(release: Release) -> None:
    by_type: dict[QueryType, int] = defaultdict(int)
    for q in release.queries:
        by_type[q.query_type] += 1
        assert q.truth_item_ids, f"{q.query_id} has no ground truth"
        assert set(q.truth_item_ids) <= set(release.items)
    assert set(by_type) == set(QueryType)
    titles = release.stats["ground_truth_titles"]
    assert titles["unmatched"] == 0 and titles["by_kind"]["fuzzy"] == 0


def test_condition_truth_is_the_source_history_meeting_every_condition(files: dict, release: Release) -> None:
    catalog, histories, kg = files["catalog"], files["histories"], files["kg"]
    checked = 0
    for name in CONDITION_FILES:
        for rec in files["records"][name]:
            conditions = [tuple(c) for c in rec["sharedRelationships"]]
            assert rec["condition_num"] == len(conditions) >= 1
            # implicit/misinformed: the referenced item is not an answer to its own query
            by_natural = {_natural(t): i for i, t in catalog.items()}
            referenced = {by_natural[h["movie"]] for h in rec.get("multihop_info", [])}
            expected = sorted(
                {
                    i for i in histories[rec["source_user"]]
                    if i not in referenced and all(c in kg[i] for c in conditions)
                }
            )
            assert sorted(rec["movieSubsetId"]) == expected
            assert rec["movieSubset"] == [catalog[i] for i in rec["movieSubsetId"]]
            checked += 1
    assert checked == SMALL["num_explicit"] + SMALL["num_implicit"] + SMALL["num_misinformed"]
    # the reader sees the same truth, every truth item meets every condition, and the history is attached
    for q in release.queries:
        if q.query_type.is_condition_query:
            assert all(all(c in kg[i] for c in q.conditions) for i in q.truth_item_ids)
            assert set(q.truth_item_ids) <= set(q.history_item_ids)
            assert sorted(q.history_item_ids) == sorted(histories[q.source_users[0]])


def test_reference_facts_are_true_and_misinformation_is_wrong(files: dict) -> None:
    by_natural = {_natural(t): i for i, t in files["catalog"].items()}
    assert len(by_natural) == len(files["catalog"])
    kg = files["kg"]
    for name in ("ImplicitQuery.json", "MisinformedQuery.json"):
        for rec in files["records"][name]:
            (hop,) = rec["multihop_info"]
            ref = by_natural[hop["movie"]]
            assert (hop["relation"], hop["person"]) in kg[ref]  # the referenced fact is true
            assert [hop["relation"], hop["person"]] in rec["sharedRelationships"]
            assert hop["movie"] in rec["situational_description_query"]
    for rec in files["records"]["MisinformedQuery.json"]:
        (wrong,) = rec["misinformed"]
        (hop,) = rec["multihop_info"]
        assert wrong["movie"] == hop["movie"] and wrong["relation"] == hop["relation"]
        assert wrong["original person"] == hop["person"]
        assert wrong["person"] != wrong["original person"]
        assert (wrong["relation"], wrong["person"]) not in kg[by_natural[wrong["movie"]]]  # planted lie
        assert wrong["person"] in rec["query"]


def test_referenced_item_is_not_its_own_answer(files: dict) -> None:
    by_natural = {_natural(t): i for i, t in files["catalog"].items()}
    offending = [
        rec["data_idx"]
        for name in ("ImplicitQuery.json", "MisinformedQuery.json")
        for rec in files["records"][name]
        if by_natural[rec["multihop_info"][0]["movie"]] in rec["movieSubsetId"]
    ]
    assert offending == []


def test_demographics_titles_in_natural_order_resolve_to_the_right_items(files: dict, release: Release) -> None:
    catalog = files["catalog"]
    by_natural = {_natural(t): i for i, t in catalog.items()}
    matcher = TitleMatcher(catalog)
    demographics = [q for q in release.queries if q.query_type is QueryType.DEMOGRAPHICS]
    moved = 0
    for q in demographics:
        assert q.truth_item_ids == tuple(by_natural[t] for t in q.truth_titles)
        for title in q.truth_titles:
            if title not in catalog.values():  # written in natural order ("The X (1990)")
                match = matcher.match(title)
                assert (match.kind, match.item_id) == ("normalized", by_natural[title])
                moved += 1
    assert moved > 0, "no demographics title exercised the normalised matching"
    assert release.stats["ground_truth_titles"]["by_type"]["demographics"]["by_kind"]["normalized"] == moved


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, world: Path) -> None:
    again = write_world(tmp_path / "a", SyntheticWorldConfig(seed=0, **SMALL))
    for name in ALL_FILES:
        assert (again / name).read_bytes() == (world / "movie" / name).read_bytes(), name
    other = write_world(tmp_path / "b", SyntheticWorldConfig(seed=1, **SMALL))
    assert (other / "movies.dat").read_bytes() != (again / "movies.dat").read_bytes()
    assert (other / "ExplicitQuery.json").read_bytes() != (again / "ExplicitQuery.json").read_bytes()


def test_second_call_is_a_no_op_and_a_new_config_rewrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SyntheticWorldConfig(seed=0, **SMALL)
    folder = write_world(tmp_path, cfg)
    before = {name: (folder / name).stat().st_mtime_ns for name in ALL_FILES}
    stamp = json.loads((folder / "world.json").read_text())
    assert stamp["seed"] == 0 and stamp["num_items"] == 300

    def no_build(*_a: object, **_k: object) -> None:
        raise AssertionError("the world was generated again")

    monkeypatch.setattr(synthetic, "_WorldBuilder", no_build)
    assert write_world(tmp_path, cfg) == folder
    assert {name: (folder / name).stat().st_mtime_ns for name in ALL_FILES} == before
    with pytest.raises(AssertionError, match="generated again"):
        write_world(tmp_path, SyntheticWorldConfig(seed=5, **SMALL))  # stamp differs: rebuilds
