"""curves.png from a run folder, and the rows of the completions table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from rerec.rl.completion_rows import completion_rows, marked_text, penalised_segments
from rerec.rl.curves import read_metrics_csv, render_run

PNG = b"\x89PNG\r\n\x1a\n"
SRC = Path(__file__).resolve().parents[1] / "src"


def _run_folder(tmp: Path) -> Path:
    run = tmp / "version_0"
    run.mkdir()
    lines = ["step,reward,rewards/ndcg/mean,rewards/qas/mean,curriculum/active,curriculum/mean_difficulty,"
             "time/generate_s,time/score_s,time/update_s,val/accuracy"]
    for s in range(40):
        lines.append(f"{s},{s / 40},{s / 50},0.3,{100 if s < 20 else 60},{1 - s / 80},0.2,0.05,0.1,")
    lines.append("39,,,,,,,,,0.5")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    by_type = {"explicit": 0.5, "implicit": 0.2}
    (run / "summary.json").write_text(json.dumps({
        "val_before": {"accuracy": 0.3, "accuracy_by_type": by_type,
                       "sampled": {"accuracy": 0.25, "accuracy_by_type": by_type, "pass_at_n": 0.5}},
        "val_after": {"accuracy": 0.4, "accuracy_by_type": by_type,
                      "sampled": {"accuracy": 0.35, "accuracy_by_type": by_type, "pass_at_n": 0.6}},
        "curriculum": [{"epoch": 0, "active": 100, "dropped": 0, "mean_difficulty": 1.0}],
    }))
    return run


def test_metrics_csv_is_read_per_column(tmp_path: Path) -> None:
    metrics = read_metrics_csv(_run_folder(tmp_path) / "metrics.csv")
    assert len(metrics["reward"]) == 40 and metrics["reward"][1] == (1, 1 / 40)
    assert metrics["val/accuracy"] == [(39, 0.5)]  # empty cells skipped


def test_render_run_and_its_command(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    assert render_run(run).read_bytes()[:8] == PNG
    out = tmp_path / "elsewhere.png"
    subprocess.run([sys.executable, "-m", "rerec.rl.curves", str(run), "--out", str(out)], check=True,
                   env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, capture_output=True)
    assert out.read_bytes()[:8] == PNG


def test_a_folder_without_metrics_still_draws(tmp_path: Path) -> None:
    assert render_run(tmp_path).read_bytes()[:8] == PNG  # empty panels say what is missing


def test_penalised_segments_are_the_lines_arguing_for_a_wrong_title() -> None:
    text = "Needs: a thriller.\nAlien (1979) is a thriller.\n\\boxed{Alien (1979)}"
    spans = penalised_segments(text, ["Alien (1979)"])
    assert [text[s:e] for s, e in spans] == ["Alien (1979) is a thriller."]  # the answer line is not a segment
    assert marked_text(text, spans).splitlines()[1] == "⟦Alien (1979) is a thriller.⟧"
    assert penalised_segments(text, []) == []


def test_completion_rows_carry_components_title_match_and_penalties() -> None:
    task = SimpleNamespace(query_id="q1", query_type="explicit")
    texts = ["Alien (1979) fits.\n\\boxed{Alien (1979)}", "\\boxed{Heat (1995)}"]
    scored = SimpleNamespace(
        total=torch.tensor([0.1, 1.2]), components={"ndcg": torch.tensor([0.0, 1.0]), "qas": torch.tensor([0.5, 1.0])},
        parsed=[["Alien (1979)"], ["Heat (1995)"]], match_kinds=[["candidate"], ["exact"]], correct=[False, True],
        wrong_titles=[["Alien (1979)"], []])
    rows = completion_rows(3, [task], texts, scored, group_size=2, segment_by="line")
    assert rows[0]["parsed_title"] == "Alien (1979)" and rows[0]["match_kind"] == "candidate"
    assert rows[0]["ndcg"] == 0.0 and rows[0]["qas"] == 0.5 and rows[1]["correct"] is True
    assert rows[0]["penalised_segments"] == [[0, 18]] and rows[1]["penalised_segments"] == []
    assert completion_rows(3, [task], texts, scored, 2, segment_by=None)[0]["penalised_segments"] == []
