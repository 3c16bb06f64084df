"""Atomic writes: the file is replaced whole, a failure keeps the old one, the temporary file sits beside it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from rerec.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old contents, longer than the new ones\n")
    atomic_write_text(path, "new\nlines\n")
    assert path.read_bytes() == b"new\nlines\n"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write_json(path, {"a": [1, 2]}, indent=1)
    assert path.read_text() == '{\n "a": [\n  1,\n  2\n ]\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_text_keeps_the_encoding_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "latin.dat"
    atomic_write_text(path, "Amélie\r\nLéon\n", encoding="latin-1")
    assert path.read_bytes() == "Amélie\r\nLéon\n".encode("latin-1")


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half a fi")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_temporary_is_in_the_destination_folder_whatever_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere, dest = tmp_path / "elsewhere", tmp_path / "dest" / "nested"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR on the next gettempdir()
    assert Path(tempfile.gettempdir()) == elsewhere
    with atomic_path(dest / "report.json") as tmp:
        assert tmp.parent == dest
        tmp.write_text("{}")
    assert (dest / "report.json").read_text() == "{}"
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["report.json"]
