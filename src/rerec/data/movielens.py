"""Readers of the MovieLens-format files of a RecBench+ release: ``movies.dat``, ``users.dat``,
``ratings.dat``.

All three use ``::`` as the field separator. The release mixes encodings: most lines are UTF-8, some
characters were already replaced by U+FFFD, and the original MovieLens files are latin-1. Each line is
decoded as UTF-8 first and falls back to latin-1 (which never fails), so every line reads and no byte
is silently dropped. Malformed lines (a line with a field too many or too few, a non-integer id, an empty
title, a duplicate id) raise :class:`RecBenchFormatError` naming the file, the 1-based line number and
the field; with ``on_error="skip"`` they are skipped instead, logged at WARNING and counted in ``stats``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rerec.data.records import Interactions, Item, User

SEPARATOR = "::"
PathLike = str | os.PathLike[str]
OnError = Literal["raise", "skip"]
MAX_LOGGED_LINE_SKIPS = 20  # skipped lines logged one by one; the count is always complete

logger = logging.getLogger("rerec.data")


class RecBenchFormatError(ValueError):
    """A release file (``.dat``, query JSON, triples TSV) does not have the documented format.

    The message always names the file and, when known, the line (text files) or record index (JSON
    files) and the field, e.g. ``movies.dat:12: field 'MovieID': not an integer: 'x12'``.

    Args:
        path: The offending file.
        message: What is wrong.
        line: 1-based line number in a text file.
        record: 0-based record index in a JSON list.
        field: Name of the offending field.
    """

    def __init__(
        self,
        path: PathLike,
        message: str,
        *,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.record = record
        self.field = field
        where = str(self.path)
        if line is not None:
            where += f":{line}"
        if record is not None:
            where += f": record {record}"
        what = f"field {field!r}: {message}" if field is not None else message
        super().__init__(f"{where}: {what}")


def decode_line(raw: bytes) -> str:
    """Decode one line: UTF-8 when valid, else latin-1 (the MovieLens original encoding)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines of ``path`` as ``(1-based line number, decoded text without line ending)``."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM would otherwise end up in the first id
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if raw.strip():
            yield number, decode_line(raw)


class _BadLines:
    """What a reader does with a malformed line: raise its error, or skip it (``on_error="skip"``: the
    first :data:`MAX_LOGGED_LINE_SKIPS` logged one by one, all counted; ``stats`` gets ``lines``,
    ``skipped_lines`` and the first errors as ``skips``)."""

    def __init__(self, path: Path, on_error: OnError, stats: dict[str, Any] | None) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.path, self.on_error, self.stats = path, on_error, stats
        self.skipped: list[str] = []
        self.count = 0

    def handle(self, error: RecBenchFormatError) -> None:
        if self.on_error == "raise":
            raise error
        self.count += 1
        if self.count <= MAX_LOGGED_LINE_SKIPS:
            logger.warning("skipped line: %s", error)
            self.skipped.append(str(error))

    def finish(self, rows: int) -> None:
        if self.count > MAX_LOGGED_LINE_SKIPS:
            logger.warning("%s: %d malformed lines skipped in all (the first %d are logged above)",
                           self.path, self.count, MAX_LOGGED_LINE_SKIPS)
        if self.stats is not None:
            self.stats.update(lines=rows, skipped_lines=self.count, skips=self.skipped)


def _int(path: Path, line: int, field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RecBenchFormatError(path, f"not an integer: {text!r}", line=line, field=field) from None


def _fields(path: Path, line: int, text: str, names: tuple[str, ...]) -> list[str]:
    parts = text.split(SEPARATOR)
    if len(parts) != len(names):
        raise RecBenchFormatError(
            path,
            f"expected {len(names)} '::'-separated fields ({', '.join(names)}), got {len(parts)}: {text!r}",
            line=line,
        )
    return parts


MOVIE_FIELDS = ("MovieID", "Title", "Genres")


def read_movies(path: PathLike, *, on_error: OnError = "raise", stats: dict[str, Any] | None = None) -> dict[int, Item]:
    """Read ``MovieID::Title (Year)::Genre1|Genre2`` lines into ``{item_id: Item}`` (file order).

    Titles are kept exactly as written (``"Breakfast Club, The (1985)"``); an empty genre field gives
    ``genres=()``. A line with more (or fewer) than three ``::``-separated fields is malformed — an
    extra field is reported, never folded into the title — and so is a duplicate id (the first line
    with the id is kept when skipping).

    Args:
        path: The ``.dat`` file.
        on_error: ``"raise"`` :class:`RecBenchFormatError` on a malformed line, or ``"skip"`` it (logged).
        stats: Dict updated with ``lines`` (items read), ``skipped_lines`` and ``skips`` (first errors).
    """
    path = Path(path)
    bad = _BadLines(path, on_error, stats)
    items: dict[int, Item] = {}
    for line, text in _lines(path):
        try:
            head, title, genres = _fields(path, line, text, MOVIE_FIELDS)
            item_id = _int(path, line, "MovieID", head.strip())
            title = title.strip()
            if not title:
                raise RecBenchFormatError(path, "empty title", line=line, field="Title")
            if item_id in items:
                raise RecBenchFormatError(path, f"duplicate id {item_id}", line=line, field="MovieID")
        except RecBenchFormatError as error:
            bad.handle(error)
            continue
        genre_tuple = tuple(g.strip() for g in genres.split("|") if g.strip())
        items[item_id] = Item(item_id=item_id, title=title, genres=genre_tuple)
    bad.finish(len(items))
    return items


USER_FIELDS = ("UserID", "Gender", "Age", "Occupation", "Zip")


def read_users(path: PathLike, *, on_error: OnError = "raise", stats: dict[str, Any] | None = None) -> dict[int, User]:
    """Read ``UserID::Gender::Age::Occupation::Zip`` lines into ``{user_id: User}`` (file order).

    Age and occupation stay the MovieLens codes (ints); the zip code stays a string (``"55117-1234"``
    occurs). Duplicate ids are an error. ``on_error`` and ``stats`` as for :func:`read_movies`.
    """
    path = Path(path)
    bad = _BadLines(path, on_error, stats)
    users: dict[int, User] = {}
    for line, text in _lines(path):
        try:
            uid, gender, age, occupation, zip_code = _fields(path, line, text, USER_FIELDS)
            user_id = _int(path, line, "UserID", uid.strip())
            if user_id in users:
                raise RecBenchFormatError(path, f"duplicate id {user_id}", line=line, field="UserID")
            user = User(
                user_id=user_id,
                gender=gender.strip(),
                age=_int(path, line, "Age", age.strip()),
                occupation=_int(path, line, "Occupation", occupation.strip()),
                zip_code=zip_code.strip(),
            )
        except RecBenchFormatError as error:
            bad.handle(error)
            continue
        users[user_id] = user
    bad.finish(len(users))
    return users


RATING_FIELDS = ("UserID", "ItemID", "Rating", "Timestamp")


def read_ratings(path: PathLike, *, on_error: OnError = "raise", stats: dict[str, Any] | None = None) -> Interactions:
    """Read ``UserID::ItemID::Rating::Timestamp`` lines into :class:`Interactions` (file order).

    Ids and timestamps are int64, ratings float32 (``4`` and ``4.5`` both read). The whole file is
    parsed by numpy in one call (timing: docs/performance.md). When that fast path sees anything
    irregular, the file is re-read line by line so that the error names the line and the field (or,
    with ``on_error="skip"``, the malformed lines are skipped and counted in ``stats`` as for
    :func:`read_movies`).
    """
    path = Path(path)
    bad = _BadLines(path, on_error, stats)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    table = _ratings_fast(data)
    if table is None:
        table = _ratings_slow(path, data, bad)  # raises with the line number, or parses odd spacing
    bad.finish(len(table))
    return Interactions(
        user_ids=table[:, 0].astype(np.int64),
        item_ids=table[:, 1].astype(np.int64),
        ratings=table[:, 2].astype(np.float32),
        timestamps=table[:, 3].astype(np.int64),
    )


def _ratings_fast(data: bytes) -> np.ndarray | None:
    """Parse the whole file at once; ``None`` when the layout is not exactly 4 numeric fields a line.

    Checks before trusting the flat parse: no spaces or tabs (so every field is one token), exactly 3
    ``::`` on every line, exactly ``4 * lines`` numbers, ids and timestamps integral. Returns an
    ``(n, 4)`` int64 or float64 table.
    """
    body = data.replace(b"\r", b"").strip(b"\n")
    while b"\n\n" in body:  # blank lines are allowed anywhere
        body = body.replace(b"\n\n", b"\n")
    if not body:
        return np.zeros((0, 4), dtype=np.float64)
    if b" " in body or b"\t" in body:
        return None
    raw = np.frombuffer(body, dtype=np.uint8)
    colon = raw == ord(":")
    sep_pos = np.flatnonzero(colon[1:] & colon[:-1])
    line_ends = np.append(np.flatnonzero(raw == ord("\n")), raw.size)
    n_lines = line_ends.size
    if sep_pos.size != 3 * n_lines:
        return None
    seps_per_line = np.bincount(np.searchsorted(line_ends, sep_pos), minlength=n_lines)
    if seps_per_line.size != n_lines or not np.all(seps_per_line == 3):
        return None
    text = body.replace(b"::", b" ").replace(b"\n", b" ")
    # Integer text parses several times faster as int64 (docs/performance.md); ratings like "4.5" need
    # the float parse.
    dtype = np.float64 if any(c in body for c in (b".", b"e", b"E", b"n", b"N")) else np.int64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # older numpy warns (instead of failing) on unparsable text
        try:
            flat = np.fromstring(text, dtype=dtype, sep=" ")  # type: ignore[call-overload]
        except (DeprecationWarning, ValueError):
            return None
    if flat.size != 4 * n_lines:
        return None
    table = flat.reshape(n_lines, 4)
    if dtype is np.float64:
        ints = table[:, [0, 1, 3]]
        if not np.all(np.isfinite(table)) or not np.array_equal(ints, np.floor(ints)):
            return None  # the slow path names the line with the non-integral id or NaN
    return table


def _ratings_slow(path: Path, data: bytes, bad: _BadLines) -> np.ndarray:
    """Line-by-line parse used only to locate an error, skip malformed lines, or accept irregular spacing."""
    rows: list[tuple[float, float, float, float]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            rows.append(_rating_row(path, number, decode_line(raw)))
        except RecBenchFormatError as error:
            bad.handle(error)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _rating_row(path: Path, number: int, text: str) -> tuple[float, float, float, float]:
    parts = _fields(path, number, text, RATING_FIELDS)
    uid = _int(path, number, "UserID", parts[0].strip())
    iid = _int(path, number, "ItemID", parts[1].strip())
    try:
        rating = float(parts[2])
    except ValueError:
        raise RecBenchFormatError(
            path, f"not a number: {parts[2]!r}", line=number, field="Rating"
        ) from None
    if not np.isfinite(rating):
        raise RecBenchFormatError(path, f"not finite: {parts[2]!r}", line=number, field="Rating")
    ts = _int(path, number, "Timestamp", parts[3].strip())
    return (uid, iid, rating, ts)
