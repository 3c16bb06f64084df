"""MovieLens-format readers on the real release files and on fabricated, broken ones."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rerec.data.movielens import RecBenchFormatError, read_movies, read_ratings, read_users


def test_real_movies(recbench_dir: Path) -> None:
    movies = read_movies(recbench_dir / "movie" / "movies.dat")
    assert len(movies) == 3883
    assert movies[1].title == "Toy Story (1995)"
    assert movies[1].genres == ("Animation", "Children's", "Comedy")
    assert movies[1968].title == "Breakfast Club, The (1985)"
    # U+FFFD already in the release is kept as a character, not dropped or mangled.
    assert movies[73].title == "Mis\ufffdrables, Les (1995)"
    assert max(movies) == 3952
    assert all(item.genres for item in movies.values())


def test_real_users(recbench_dir: Path) -> None:
    users = read_users(recbench_dir / "movie" / "users.dat")
    assert len(users) == 6040
    first = users[1]
    assert (first.gender, first.age, first.occupation, first.zip_code) == ("F", 1, 10, "48067")
    assert {u.age for u in users.values()} == {1, 18, 25, 35, 45, 50, 56}
    assert {u.occupation for u in users.values()} == set(range(21))


def test_latin1_line_falls_back_and_utf8_line_stays(tmp_path: Path) -> None:
    path = tmp_path / "movies.dat"
    path.write_bytes(
        "1::Café (1999)::Comedy\n".encode("utf-8")
        + "2::Misérables, Les (1995)::Drama|Musical\r\n".encode("latin-1")
        + b"\n3::Untitled (2000)::\n"
    )
    movies = read_movies(path)
    assert movies[1].title == "Café (1999)"
    assert movies[2].title == "Misérables, Les (1995)"
    assert movies[2].genres == ("Drama", "Musical")
    assert movies[3].genres == ()


@pytest.mark.parametrize(
    ("content", "line", "field"),
    [
        ("1::A (1990)::Drama\nx2::B (1991)::Drama\n", 2, "MovieID"),
        ("1::A (1990)::Drama\n\n1::B (1991)::Drama\n", 3, "MovieID"),
        ("1::A (1990)\n", 1, None),
        ("1::A (1990)::Drama\n2::B: Part::Two (1991)::Drama\n", 2, None),  # an extra field, not a longer title
        ("1:: ::Drama\n", 1, "Title"),
    ],
)
def test_bad_movies_name_line_and_field(tmp_path: Path, content: str, line: int, field: str) -> None:
    path = tmp_path / "movies.dat"
    path.write_text(content)
    with pytest.raises(RecBenchFormatError) as info:
        read_movies(path)
    assert info.value.line == line and info.value.field == field
    assert f"movies.dat:{line}" in str(info.value)


def test_bad_users(tmp_path: Path) -> None:
    path = tmp_path / "users.dat"
    path.write_text("1::F::1::10::48067\n2::M::old::16::70072\n")
    with pytest.raises(RecBenchFormatError, match=r"users.dat:2: field 'Age'"):
        read_users(path)
    path.write_text("1::F::1::10\n")
    with pytest.raises(RecBenchFormatError, match=r"users.dat:1: expected 5"):
        read_users(path)


def test_empty_files_read_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.dat"
    path.write_text("\n")
    assert read_movies(path) == {} and read_users(path) == {}
    assert len(read_ratings(path)) == 0


def test_ratings_values_and_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n1::661::3::978302109\n\n2::3068::4.5::978299000\r\n")
    r = read_ratings(path)
    assert len(r) == 3
    assert r.user_ids.dtype == np.int64 and r.item_ids.dtype == np.int64
    assert r.timestamps.dtype == np.int64 and r.ratings.dtype == np.float32
    assert r.user_ids.tolist() == [1, 1, 2]
    assert r.item_ids.tolist() == [1193, 661, 3068]
    assert r.ratings.tolist() == [5.0, 3.0, 4.5]
    assert r.timestamps.tolist() == [978300760, 978302109, 978299000]


@pytest.mark.parametrize(
    ("content", "line", "field"),
    [
        # the two bad lines balance each other's field counts: the per-line check must catch it
        ("1::2::3::4\n1::2::3\n1::2::3::4::5\n", 2, None),
        ("1::2::3::4\n1::2::x::4\n", 2, "Rating"),
        ("1::2.5::3::4\n", 1, "ItemID"),
        ("1::2::3::4 5\n", 1, "Timestamp"),
        ("1::2::nan::4\n", 1, "Rating"),
        ("1::::3::4\n", 1, "ItemID"),
    ],
)
def test_bad_ratings_name_line_and_field(tmp_path: Path, content: str, line: int, field: str) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text(content)
    with pytest.raises(RecBenchFormatError) as info:
        read_ratings(path)
    assert (info.value.line, info.value.field) == (line, field)


def test_ratings_large_file_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 50_000
    cols = [rng.integers(1, 6041, n), rng.integers(1, 3953, n), rng.integers(1, 6, n), rng.integers(9e8, 1e9, n)]
    path = tmp_path / "ratings.dat"
    path.write_text("".join(f"{a}::{b}::{c}::{d}\n" for a, b, c, d in zip(*cols)))
    r = read_ratings(path)
    assert np.array_equal(r.user_ids, cols[0]) and np.array_equal(r.item_ids, cols[1])
    assert np.array_equal(r.ratings, cols[2].astype(np.float32))
    assert np.array_equal(r.timestamps, cols[3])


def test_skip_mode_counts_and_skips_bad_dat_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    movies, users, ratings = tmp_path / "movies.dat", tmp_path / "users.dat", tmp_path / "ratings.dat"
    movies.write_text("1::A (1990)::Drama\n2::B (1991)::Drama::extra\nx3::C (1992)::Drama\n1::D (1993)::Drama\n4::E (1994)::\n")
    users.write_text("1::F::1::10::48067\n2::M::old::16::70072\n3::M::25::15\n")
    ratings.write_text("1::1::5::100\n1::2::x::101\n2::4::3::102\n2::4::3\n")
    with pytest.raises(RecBenchFormatError, match=r"movies.dat:2: expected 3 '::'-separated fields"):
        read_movies(movies)
    stats: dict = {}
    with caplog.at_level(logging.WARNING, logger="rerec.data"):
        assert [(i.item_id, i.title) for i in read_movies(movies, on_error="skip", stats=stats).values()] == [
            (1, "A (1990)"), (4, "E (1994)")]
    assert stats["lines"] == 2 and stats["skipped_lines"] == 3 and len(stats["skips"]) == 3
    assert "movies.dat:2: expected 3" in stats["skips"][0] and "duplicate id 1" in stats["skips"][2]
    assert sum("skipped line" in r.getMessage() for r in caplog.records) == 3
    assert list(read_users(users, on_error="skip", stats=stats)) == [1] and stats["skipped_lines"] == 2
    table = read_ratings(ratings, on_error="skip", stats=stats)
    assert table.item_ids.tolist() == [1, 4] and stats["skipped_lines"] == 2
    with pytest.raises(ValueError, match="on_error"):
        read_movies(movies, on_error="ignore")  # type: ignore[arg-type]


def test_many_skipped_lines_are_summarised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("".join(f"1::{i}::x::1\n" for i in range(30)) + "1::1::4::1\n")
    stats: dict = {}
    with caplog.at_level(logging.WARNING, logger="rerec.data"):
        assert len(read_ratings(path, on_error="skip", stats=stats)) == 1
    assert stats["skipped_lines"] == 30 and len(stats["skips"]) == 20
    assert "30 malformed lines skipped in all" in caplog.records[-1].getMessage()
