"""RecBench+ query readers and load_release: the five types on fabricated files, broken inputs, the
real sample, and the knowledge-graph input."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from rerec.data.kg_input import item_attributes, read_triples_file, release_triples
from rerec.data.matching import TitleMatcher
from rerec.data.recbench import (
    RecBenchFormatError,
    catalog_from_query_records,
    load_json_records,
    load_release,
    read_query_file,
)
from rerec.data.records import Item, QueryType, Triple

MOVIES = """\
356::Forrest Gump (1994)::Comedy|Romance|War
2028::Saving Private Ryan (1998)::Action|Drama|War
1968::Breakfast Club, The (1985)::Comedy|Drama
4000::Cast Away (2000)::Drama
1411::Hamlet (1996)::Drama
3723::Hamlet (1990)::Drama
"""
USERS = "2326::M::25::4::55117\n7::F::35::1::06810\n"
RATINGS = "2326::2028::5::300\n2326::356::4::100\n7::1968::3::50\n2326::4000::2::200\n"

EXPLICIT = {
    "source_user": "2326", "condition_num": 2, "movieCount": 2,
    "movieSubset": ["Forrest Gump (1994)", "Saving Private Ryan (1998)"], "movieSubsetId": [356, 2028],
    "sharedRelationships": [["Starring", "Tom Hanks"], ["Genre", "War"]],
    "direct_description_query": "Can you recommend some war movies starring Tom Hanks?",
    "situational_description_query": "I'm looking for a gripping war film with Tom Hanks in the lead.",
    "data_idx": 3862,
}
IMPLICIT = {
    "source_user": "2326", "condition_num": 1, "movieCount": 1,
    "movieSubset": ["Cast Away (2000)"], "movieSubsetId": [4000],
    "sharedRelationships": [["Starring", "Tom Hanks"]],
    "multihop_info": [{"movie": "Forrest Gump (1994)", "relation": "Starring", "person": "Tom Hanks"}],
    "direct_description_query": "Films starring Tom Hanks.",
    "situational_description_query": "Something with the lead of Forrest Gump?",
    "data_idx": 5,
}
MISINFORMED = {
    **IMPLICIT,
    "data_idx": 9,
    "multihop_info": [{"movie": "The Breakfast Club (1985)", "relation": "Directed_by", "person": "John Hughes"}],
    "sharedRelationships": [["Directed_by", "John Hughes"]],
    "misinformed": [{"movie": "The Breakfast Club (1985)", "relation": "Directed_by",
                     "original person": "John Hughes", "person": "Steven Spielberg"}],
    "query": "Films by the director of The Breakfast Club, Steven Spielberg?",
    "movieSubset": ["The Breakfast Club (1985)"], "movieSubsetId": [1968],
}
INTEREST = {
    "source_users": ["2326", "7"],
    "Shared consecutive movies": ["Forrest Gump (1994)"],
    "query & ground true": [
        {"reason": "Both like drama.", "query": "A drama for two?", "movie subset": ["Cast Away (2000)"]},
        {},  # the release has empty entries; the benchmark numbers queries without them
        {"reason": "War.", "query": "A war film?", "movie subset": ["Saving Private Ryan", "Unknown Film (1901)"]},
    ],
}
DEMOGRAPHICS = {
    "data_idx": 30, "group_type": "age_occupation", "group": ["25-34", "other"],
    "top_10_movies": [[1968, 0.48], [356, 0.41]], "summary": "User Group: ...",
    "query & ground true": [
        {"reason": "Nostalgia.", "query": "80s classics?", "movie subset": ["The Breakfast Club (1985)", "Hamlet (1990)"]},
    ],
}


def write_release(root: Path, files: dict[str, Any] | None = None, *, ratings: bool = True) -> Path:
    folder = root / "movie"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_text(MOVIES)
    (folder / "users.dat").write_text(USERS)
    if ratings:
        (folder / "ratings.dat").write_text(RATINGS)
    default = {
        "ExplicitQuery.json": [EXPLICIT],
        "ImplicitQuery.json": [IMPLICIT],
        "MisinformedQuery.json": [MISINFORMED],
        "InterestBasedQuery.json": [INTEREST],
        "UserBasedQuery.json": [DEMOGRAPHICS],
    }
    for name, content in (files if files is not None else default).items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def test_all_five_types(tmp_path: Path) -> None:
    release = load_release(write_release(tmp_path).parent)
    by_id = {q.query_id: q for q in release.queries}
    assert list(by_id) == [
        "movie/explicit/3862", "movie/implicit/5", "movie/misinformed/9",
        "movie/interest_based/0/0", "movie/interest_based/0/1", "movie/demographics/30/0",
    ]
    explicit = by_id["movie/explicit/3862"]
    assert explicit.query_type is QueryType.EXPLICIT and explicit.domain == "movie"
    assert explicit.text.startswith("I'm looking for a gripping war film")
    assert explicit.conditions == (("Starring", "Tom Hanks"), ("Genre", "War"))
    assert explicit.truth_item_ids == (356, 2028) and explicit.source_users == ("2326",)
    assert explicit.history_item_ids == (356, 4000, 2028)  # time order from ratings.dat
    assert explicit.extra["direct_description_query"].startswith("Can you recommend")

    implicit = by_id["movie/implicit/5"]
    assert implicit.extra["multihop_info"][0]["movie"] == "Forrest Gump (1994)"
    misinformed = by_id["movie/misinformed/9"]
    assert misinformed.text == MISINFORMED["query"]  # the misinformed text, not the situational one
    assert misinformed.extra["misinformed"][0]["person"] == "Steven Spielberg"

    interest = by_id["movie/interest_based/0/1"]  # second non-empty entry
    assert interest.text == "A war film?" and interest.source_users == ("2326", "7")
    assert interest.truth_titles == ("Saving Private Ryan", "Unknown Film (1901)")
    assert interest.truth_item_ids == (2028,) and interest.history_item_ids == ()
    assert interest.extra["reason"] == "War." and interest.extra["shared_titles"] == ["Forrest Gump (1994)"]

    demo = by_id["movie/demographics/30/0"]
    assert demo.truth_item_ids == (1968, 3723)  # natural order + year picks among the two Hamlets
    assert demo.extra["group"] == ["25-34", "other"] and demo.extra["top_item_ids"] == [1968, 356]

    stats = release.stats
    assert stats["queries_by_type"] == {
        "explicit": 1, "implicit": 1, "misinformed": 1, "interest_based": 2, "demographics": 1
    }
    assert stats["files"]["interest_based"]["empty_entries"] == 1
    titles = stats["ground_truth_titles"]
    assert (titles["total"], titles["matched"], titles["unmatched"]) == (9, 8, 1)
    assert titles["by_kind"] == {"id": 4, "exact": 2, "normalized": 2, "fuzzy": 0, "none": 1}
    assert titles["unmatched_titles"] == ["Unknown Film (1901)"]
    assert titles["by_type"]["interest_based"]["unmatched"] == 1
    assert len(release.items) == 6 and len(release.users) == 2 and len(release.interactions) == 4


def test_knowledge_graph_triples(tmp_path: Path) -> None:
    folder = write_release(tmp_path)
    (folder / "kg_triples.tsv").write_text(
        "item\trelation\tvalue\n356\tDirected_by\tRobert Zemeckis\n# a comment\n\n"
        "The Breakfast Club (1985)\tStarring\tMolly Ringwald\n356\tGenre\tWar\n"
    )
    release = load_release(tmp_path)
    triples = set(release.triples)
    assert len(triples) == len(release.triples)  # deduplicated
    assert Triple(356, "Genre", "War") in triples  # catalog genre (also condition and file: once)
    assert {Triple(356, "Starring", "Tom Hanks"), Triple(2028, "Starring", "Tom Hanks")} <= triples
    assert Triple(4000, "Starring", "Tom Hanks") in triples  # implicit condition on its truth
    assert Triple(1968, "Directed_by", "John Hughes") in triples  # multihop / misinformed original
    assert Triple(1968, "Directed_by", "Steven Spielberg") not in triples  # the planted wrong fact
    assert {Triple(356, "Directed_by", "Robert Zemeckis"), Triple(1968, "Starring", "Molly Ringwald")} <= triples
    kg = release.stats["kg"]
    assert kg["file_triples"] == 3 and kg["file_skipped_lines"] == 0 and kg["total"] == len(triples)
    attrs = item_attributes(release.triples)
    assert {("Starring", "Tom Hanks"), ("Genre", "War")} <= attrs[2028]


def test_release_triples_counts_sources() -> None:
    items = {1: Item(1, "A (2000)", ("Drama",)), 2: Item(2, "B (2001)", ())}
    stats: dict[str, Any] = {}
    triples = release_triples(items, [], extra_triples=[Triple(2, "Genre", "War"), Triple(1, "Genre", "Drama")], stats=stats)
    assert triples == [Triple(1, "Genre", "Drama"), Triple(2, "Genre", "War")]
    assert stats["from_genres"] == 1 and stats["from_file"] == 1 and stats["total"] == 2


def test_triples_file_errors_name_the_line(tmp_path: Path) -> None:
    matcher = TitleMatcher({1: "Heat (1995)"})
    path = tmp_path / "kg.tsv"
    for content, line, fieldname in [
        ("1\tGenre\tCrime\n1\tGenre\n", 2, None),
        ("1\tGenre\tCrime\n\n99\tGenre\tCrime\n", 3, "item"),
        ("Nothing Like It (1990)\tGenre\tCrime\n", 1, "item"),
        ("1\t\tCrime\n", 1, "relation"),
    ]:
        path.write_text(content)
        with pytest.raises(RecBenchFormatError) as info:
            read_triples_file(path, matcher)
        assert (info.value.line, info.value.field) == (line, fieldname)
        assert f"kg.tsv:{line}" in str(info.value)
    stats: dict[str, Any] = {}
    path.write_text("1\tGenre\tCrime\n99\tGenre\tCrime\nheat\tStarring\tAl Pacino\n")
    assert read_triples_file(path, matcher, on_error="skip", stats=stats) == [
        Triple(1, "Genre", "Crime"), Triple(1, "Starring", "Al Pacino")
    ]
    assert stats["file_skipped_lines"] == 1


def test_missing_files_are_logged_and_marked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_release(tmp_path, {"ExplicitQuery.json": [EXPLICIT]}, ratings=False)
    with caplog.at_level(logging.INFO, logger="rerec.data"):
        release = load_release(tmp_path)
    assert [q.query_id for q in release.queries] == ["movie/explicit/3862"]
    assert release.stats["files"]["implicit"] == "missing" and release.interactions is None
    assert any("UserBasedQuery.json" in r.getMessage() for r in caplog.records)
    assert release.queries[0].history_item_ids == ()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("  \n", "empty file"),
        (json.dumps([EXPLICIT])[:-40], "invalid JSON"),
        ('{"data_idx": 1}', "expected a JSON list"),
    ],
)
def test_broken_files(tmp_path: Path, content: str, message: str) -> None:
    write_release(tmp_path, {"ExplicitQuery.json": content})
    with pytest.raises(RecBenchFormatError, match=message) as info:
        load_release(tmp_path)
    assert "ExplicitQuery.json" in str(info.value)
    release = load_release(tmp_path, on_error="skip")
    assert release.queries == [] and release.stats["files"]["explicit"] == "skipped"
    assert len(release.stats["skipped_files"]) == 1


def test_truncated_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ExplicitQuery.json"
    path.write_text(json.dumps([EXPLICIT, EXPLICIT], indent=1)[:-30])
    with pytest.raises(RecBenchFormatError) as info:
        load_json_records(path)
    assert info.value.line is not None and info.value.line > 10


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


@pytest.mark.parametrize(
    ("name", "record", "fieldname"),
    [
        ("ExplicitQuery.json", _without(EXPLICIT, "situational_description_query"), "situational_description_query"),
        ("ExplicitQuery.json", _without(EXPLICIT, "movieSubset"), "movieSubset"),
        ("ExplicitQuery.json", _without(EXPLICIT, "sharedRelationships"), "sharedRelationships"),
        ("ExplicitQuery.json", {**EXPLICIT, "sharedRelationships": "Starring Tom Hanks"}, "sharedRelationships"),
        ("ExplicitQuery.json", {**EXPLICIT, "sharedRelationships": [["Starring"]]}, "sharedRelationships[0]"),
        ("ExplicitQuery.json", {**EXPLICIT, "movieSubset": "Forrest Gump (1994)"}, "movieSubset"),
        ("ExplicitQuery.json", {**EXPLICIT, "data_idx": "x"}, "data_idx"),
        ("ExplicitQuery.json", {**EXPLICIT, "situational_description_query": 3}, "situational_description_query"),
        ("ImplicitQuery.json", {**IMPLICIT, "multihop_info": "Forrest Gump"}, "multihop_info"),
        ("InterestBasedQuery.json", {**INTEREST, "query & ground true": {}}, "query & ground true"),
        ("InterestBasedQuery.json", {**INTEREST, "source_users": [["2326"]]}, "source_users"),
        ("UserBasedQuery.json", {**DEMOGRAPHICS, "top_10_movies": ["x"]}, "top_10_movies"),
        ("ExplicitQuery.json", "not an object", None),
    ],
)
def test_malformed_record_names_file_record_and_field(
    tmp_path: Path, name: str, record: Any, fieldname: str | None
) -> None:
    valid = {"ExplicitQuery.json": EXPLICIT, "ImplicitQuery.json": IMPLICIT,
             "InterestBasedQuery.json": INTEREST, "UserBasedQuery.json": DEMOGRAPHICS}[name]
    write_release(tmp_path, {name: [valid, record]})
    with pytest.raises(RecBenchFormatError) as info:
        load_release(tmp_path)
    error = info.value
    assert error.path.name == name and error.record == 1 and error.field == fieldname
    assert f"{name}: record 1" in str(error)


def test_malformed_entry_of_multi_query_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = {**DEMOGRAPHICS, "query & ground true": [DEMOGRAPHICS["query & ground true"][0], {"reason": "r", "query": "q"}]}
    write_release(tmp_path, {"UserBasedQuery.json": [bad]})
    with pytest.raises(RecBenchFormatError) as info:
        load_release(tmp_path)
    assert (info.value.record, info.value.field) == (0, "query & ground true[1].movie subset")
    with caplog.at_level(logging.WARNING, logger="rerec.data"):
        release = load_release(tmp_path, on_error="skip")
    assert [q.query_id for q in release.queries] == ["movie/demographics/30/0"]
    assert release.stats["files"]["demographics"]["skipped_queries"] == 1
    assert any("skipped" in r.getMessage() for r in caplog.records)


def test_skip_mode_counts_and_keeps_the_good_records(tmp_path: Path) -> None:
    records = [
        EXPLICIT,
        _without(EXPLICIT, "movieSubset"),
        {**EXPLICIT, "data_idx": 1},
        {**EXPLICIT, "data_idx": 2, "source_user": ["2326"]},  # fails after its titles were read
    ]
    write_release(tmp_path, {"ExplicitQuery.json": records})
    release = load_release(tmp_path, on_error="skip")
    assert [q.query_id for q in release.queries] == ["movie/explicit/3862", "movie/explicit/1"]
    stats = release.stats["files"]["explicit"]
    assert stats["records"] == 4 and stats["skipped_records"] == 2
    assert [(s["record"], s["field"]) for s in stats["skips"]] == [(1, "movieSubset"), (3, "source_user")]
    assert release.stats["ground_truth_titles"]["total"] == 4  # skipped records count no titles


def test_duplicate_data_idx_is_an_error(tmp_path: Path) -> None:
    write_release(tmp_path, {"ExplicitQuery.json": [EXPLICIT, EXPLICIT]})
    with pytest.raises(RecBenchFormatError, match="duplicate query id"):
        load_release(tmp_path)


def test_unknown_titles_and_bad_ids_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = [
        {**EXPLICIT, "data_idx": 1, "movieSubset": ["Forrest Gump (1994)", "Not A Real Film (1950)"], "movieSubsetId": [356]},
        {**EXPLICIT, "data_idx": 2, "movieSubsetId": [356, 99999]},
        {**EXPLICIT, "data_idx": 3, "movieSubset": ["Nowhere (1950)"], "movieSubsetId": None},
        {**EXPLICIT, "data_idx": 4, "movieSubsetId": [2028, 356]},  # ids disagree with the titles
    ]
    write_release(tmp_path, {"ExplicitQuery.json": records})
    with caplog.at_level(logging.WARNING, logger="rerec.data"):
        release = load_release(tmp_path)
    q = {q.query_id: q for q in release.queries}
    assert q["movie/explicit/1"].truth_item_ids == (356,)  # id list of the wrong length: titles matched
    assert q["movie/explicit/2"].truth_item_ids == (356, 2028)  # unknown id: its title matched
    assert q["movie/explicit/3"].truth_item_ids == ()  # kept, counted as a query without truth
    assert q["movie/explicit/4"].truth_item_ids == (2028, 356)  # given ids win; the disagreement is counted
    stats = release.stats["files"]["explicit"]
    assert (stats["invalid_subset_ids"], stats["unknown_subset_ids"], stats["queries_without_truth"]) == (1, 1, 1)
    assert stats["id_title_disagreements"] == 2
    assert release.stats["ground_truth_titles"]["unmatched_titles"] == ["Not A Real Film (1950)", "Nowhere (1950)"]
    assert any("match no catalog item" in r.getMessage() for r in caplog.records)


def test_read_query_file_directly(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps([INTEREST]))
    matcher = TitleMatcher({4000: "Cast Away (2000)", 2028: "Saving Private Ryan (1998)"})
    result = read_query_file(path, QueryType.INTEREST_BASED, matcher, domain="movie")
    assert [q.truth_item_ids for q in result.queries] == [(4000,), (2028,)]
    assert result.stats["ground_truth_titles"]["by_kind"]["normalized"] == 1
    with pytest.raises(ValueError, match="on_error"):
        read_query_file(path, QueryType.INTEREST_BASED, matcher, on_error="ignore")  # type: ignore[arg-type]


def test_book_domain_builds_its_catalog_from_the_queries(tmp_path: Path) -> None:
    folder = tmp_path / "book"
    folder.mkdir()
    explicit = {
        "source_user": "A1", "condition_num": 1, "bookSubset": ["The Hobbit", "Dune"], "bookSubsetId": [10, 20],
        "sharedRelationships": [["WRITTEN_BY", "J. R. R. Tolkien"]],
        "situational_description_query": "A Tolkien book?", "data_idx": 0,
    }
    interest = {"source_users": ["A1", "A2"], "query & ground true": [
        {"reason": "r", "query": "Fantasy?", "book subset": ["Hobbit, The", "The Silmarillion", "Silmarillion"]},
    ]}
    (folder / "ExplicitQuery.json").write_text(json.dumps([explicit]))
    (folder / "InterestBasedQuery.json").write_text(json.dumps([interest]))
    release = load_release(tmp_path, "book")
    assert release.stats["catalog"] == {"source": "query files", "items": 3}
    assert {i: it.title for i, it in release.items.items()} == {10: "The Hobbit", 20: "Dune", 21: "The Silmarillion"}
    by_id = {q.query_id: q for q in release.queries}
    assert by_id["book/explicit/0"].truth_item_ids == (10, 20)
    assert by_id["book/interest_based/0/0"].truth_item_ids == (10, 21)
    assert release.stats["files"]["demographics"] == "missing"
    assert catalog_from_query_records({}, "book") == {}


def test_no_release_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="movie"):
        load_release(tmp_path)


def test_real_demographics_sample(recbench_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "movie"
    folder.mkdir()
    for name in ("movies.dat", "users.dat"):
        shutil.copy(recbench_dir / "movie" / name, folder / name)
    shutil.copy(recbench_dir / "movie" / "UserBasedQuery.sample.json", folder / "UserBasedQuery.json")
    release = load_release(tmp_path)
    assert len(release.items) == 3883 and len(release.users) == 6040
    assert [q.query_id for q in release.queries][:2] == ["movie/demographics/0/0", "movie/demographics/0/1"]
    assert len(release.queries) == 10 and {q.query_type for q in release.queries} == {QueryType.DEMOGRAPHICS}
    first = release.queries[0]
    assert first.truth_titles == ("Stand by Me (1986)", "The Breakfast Club (1985)", "The Princess Bride (1987)")
    assert first.truth_item_ids == (1259, 1968, 1197)
    assert first.extra["group"] == "25-34" and first.extra["top_item_ids"][0] == 1259
    titles = release.stats["ground_truth_titles"]
    assert (titles["total"], titles["unmatched"]) == (35, 0)
    # Every truth id is among the group's top-10 list of the record (the release built them from it).
    for q in release.queries:
        assert set(q.truth_item_ids) <= set(q.extra["top_item_ids"]), q.query_id


def test_dat_lines_follow_on_error(tmp_path: Path) -> None:
    folder = write_release(tmp_path)
    (folder / "movies.dat").write_text(MOVIES + "77::Extra (1999)::Drama::oops\n")
    with pytest.raises(RecBenchFormatError, match=r"movies.dat:7: expected 3 '::'-separated fields"):
        load_release(tmp_path)
    release = load_release(tmp_path, on_error="skip")
    assert 77 not in release.items and len(release.items) == 6
    assert release.stats["dat_files"]["movies.dat"]["skipped_lines"] == 1
    assert release.stats["dat_files"]["users.dat"]["skipped_lines"] == 0


def test_empty_catalog_is_an_error(tmp_path: Path) -> None:
    folder = write_release(tmp_path)
    (folder / "movies.dat").write_text("\n")
    with pytest.raises(RecBenchFormatError, match="movies.dat: the catalog holds no item"):
        load_release(tmp_path)
    bare = write_release(tmp_path / "bare", {"ExplicitQuery.json": [{**EXPLICIT, "movieSubset": [], "movieSubsetId": []}]})
    (bare / "movies.dat").unlink()  # the catalog comes from the query files, which name no title
    with pytest.raises(RecBenchFormatError, match="no movies.dat and the query files name no title"):
        load_release(tmp_path / "bare")


def test_no_query_file_is_an_error(tmp_path: Path) -> None:
    write_release(tmp_path, {})
    with pytest.raises(FileNotFoundError, match="holds no query file: expected at least one of"):
        load_release(tmp_path)


@pytest.mark.parametrize("users", [None, "", "\n"])
def test_missing_or_empty_users_and_empty_query_lists_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, users: str | None
) -> None:
    folder = write_release(tmp_path, {"ExplicitQuery.json": [EXPLICIT], "ImplicitQuery.json": []})
    if users is None:
        (folder / "users.dat").unlink()
    else:
        (folder / "users.dat").write_text(users)
    with caplog.at_level(logging.WARNING):  # the default level: what a user sees
        release = load_release(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert release.users == {} and len(release.queries) == 1
    assert any(("no users.dat" if users is None else "users.dat holds no user") in w for w in warnings)
    assert any("ImplicitQuery.json holds no records" in w for w in warnings)
    write_release(tmp_path, {"ExplicitQuery.json": []})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_release(tmp_path).queries == []
    assert any("no query was read" in r.getMessage() for r in caplog.records)
