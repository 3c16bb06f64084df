"""The worked table of docs/recbench-scoring.md: the real demographics records, made-up answers, both
protocols. If a number here changes, the table in the docs must change with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _score_release import write_lines

from rerec.eval.score import score_predictions

# The made-up answers of the docs' table, one per query of the two real records.
ANSWERS = {
    "0-0": "Stand by Me (1986) [SEP] The Breakfast Club (1985) [SEP] The Princess Bride (1987)",
    "0-1": "Pulp Fiction (1994) [SEP] Reservoir Dogs (1992) [SEP] Reservoir Dogs [SEP] The Usual Suspects",
    "0-2": "Clerks [SEP] Pulp Fiction [SEP] The Princess Bride",
    "0-3": '"The Terminator (1984)" [SEP] Aliens (1986) [SEP] Terminator 2: Judgment Day (1991)',
    "1-0": "Say Anything... (1989) [SEP] [SEP] Poltergeist (1982) [SEP]",
    "1-1": "Twelve Monkeys (1995) [SEP] GoodFellas (1990) [SEP] The Usual Suspects (1995) [SEP] Reservoir Dogs (1992)",
    "1-2": "Reservoir Dogs (1992) [SEP] True Romance (1993) [SEP] "
           "Professional, The (a.k.a. Leon: The Professional) (1994)",
    "1-3": "Say Anything... (1989)",
    "1-4": "Here are a few ideas:\n- Twelve Monkeys (1995)\n- True Romance (1993)",
    "1-5": "The Breakfast Club (1985) [SEP] Poltergeist (2015) [SEP] Stand by Me (1986) [SEP] Goodfellas",
}

# id: (ndcg, recall, precision, ftr) per protocol, as in the docs' table (4 decimals).
OFFICIAL = {
    "0-0": (0.5307, 0.6667, 0.6667, 0), "0-1": (0.7328, 0.6667, 0.5, 0), "0-2": (0.2346, 0.3333, 0.3333, 0),
    "0-3": (0.4693, 0.3333, 0.3333, 0), "1-0": (0.3904, 0.25, 0.25, 0), "1-1": (0.5585, 0.5, 0.5, 0),
    "1-2": (0.5856, 0.5, 0.6667, 0), "1-3": (0.3904, 0.25, 1.0, 1), "1-4": (0.0, 0.0, 0.0, 1),
    "1-5": (0.0, 0.0, 0.0, 0),
}
CORRECTED = {
    "0-0": (1.0, 1.0, 1.0, 0), "0-1": (0.9675, 1.0, 0.75, 0), "0-2": (1.0, 1.0, 1.0, 0),
    "0-3": (0.7654, 0.6667, 0.6667, 0), "1-0": (0.6367, 0.5, 1.0, 0), "1-1": (1.0, 1.0, 1.0, 0),
    "1-2": (0.8319, 0.75, 1.0, 0), "1-3": (0.3904, 0.25, 1.0, 0), "1-4": (0.0, 0.0, 0.0, 1),
    "1-5": (0.7537, 0.75, 0.75, 0),
}
MEANS = {"official": (0.3892, 0.35, 0.425, 0.2), "corrected": (0.7345, 0.6917, 0.8167, 0.1)}


@pytest.fixture(scope="module")
def release(recbench_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("release")
    (root / "movie").mkdir()
    for name in ("movies.dat", "users.dat"):
        shutil.copy(recbench_dir / "movie" / name, root / "movie" / name)
    shutil.copy(recbench_dir / "movie" / "UserBasedQuery.sample.json", root / "movie" / "UserBasedQuery.json")
    return root


@pytest.mark.parametrize(("protocol", "expected"), [("official", OFFICIAL), ("corrected", CORRECTED)])
def test_worked_table(release: Path, tmp_path: Path, protocol: str, expected: dict[str, tuple[float, ...]]) -> None:
    predictions = write_lines(tmp_path / "p.jsonl", [{"id": i, "response": r} for i, r in ANSWERS.items()])
    summary = score_predictions(release, "movie", "UserBasedQuery", predictions, protocol, out=tmp_path / "out")
    rows = [json.loads(line) for line in (tmp_path / "out" / "per_query.jsonl").read_text().splitlines()]
    got = {r["id"]: tuple(round(r[m], 4) for m in ("ndcg", "recall", "precision", "ftr")) for r in rows}
    assert got == expected
    assert tuple(round(summary["means"][m], 4) for m in ("ndcg", "recall", "precision", "ftr")) == MEANS[protocol]
    assert (summary["queries"], summary["scored"]) == (10, 10)
    if protocol == "official":
        # 16 of the 35 truth titles are too short to reach their own title with its year
        assert (summary["truth_titles"], summary["unreachable_truth_titles"]) == (35, 16)
