"""``python -m rerec.data``: the inspection command on the real catalog and demographics sample."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rerec.data.__main__ import main


@pytest.fixture()
def real_root(recbench_dir: Path, tmp_path: Path) -> Path:
    """A release folder holding copies of the real movies.dat, users.dat and the demographics sample."""
    folder = tmp_path / "release" / "movie"
    folder.mkdir(parents=True)
    for name in ("movies.dat", "users.dat"):
        shutil.copy(recbench_dir / "movie" / name, folder / name)
    shutil.copy(recbench_dir / "movie" / "UserBasedQuery.sample.json", folder / "UserBasedQuery.json")
    return folder.parent


def test_json_output(real_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(real_root), "--domain", "movie", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert out["queries_by_type"] == {"demographics": 10}
    titles = out["ground_truth_titles"]
    assert (titles["total"], titles["matched"], titles["unmatched"]) == (35, 35, 0)
    assert titles["by_kind"] == {"id": 0, "exact": 30, "normalized": 5, "fuzzy": 0, "none": 0}
    assert titles["unmatched_titles"] == [] and titles["match_rate"] == 1.0
    assert out["catalog"] == {"source": "movies.dat", "items": 3883} and out["users"] == 6040
    assert out["missing_files"] == ["explicit", "implicit", "misinformed", "interest_based"]


def test_table_output_and_unmatched_list(real_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = real_root / "movie" / "UserBasedQuery.json"
    records = json.loads(path.read_text())
    records[0]["query & ground true"][0]["movie subset"].append("A Film Nobody Made (2042)")
    path.write_text(json.dumps(records))
    assert main([str(real_root)]) == 0
    out = capsys.readouterr().out
    assert "demographics" in out and "97.2%" in out  # 35 of 36 titles
    assert "unmatched ground-truth titles (1 distinct):\n  A Film Nobody Made (2042)" in out


def test_errors_exit_with_status_1(real_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (real_root / "movie" / "ExplicitQuery.json").write_text('[{"data_idx": 1,')
    assert main([str(real_root), "--json"]) == 1
    err = capsys.readouterr().err
    assert "ExplicitQuery.json" in err and "invalid JSON" in err
    assert main([str(real_root), "--json", "--on-error", "skip"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"]["files"]
    assert main([str(tmp_path / "nowhere")]) == 1


def test_module_entry_point(real_root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rerec.data", str(real_root), "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert json.loads(done.stdout)["queries_by_type"] == {"demographics": 10}
