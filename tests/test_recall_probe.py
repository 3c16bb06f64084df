"""``benchmarks/recall_probe.py``: its JSON contract on a few steps of a small model (the phase change
itself is measured on the default sizes, docs/tiny-world.md)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import recall_probe  # noqa: E402


def test_probe_prints_one_json_with_the_curve(capsys) -> None:
    out = recall_probe.main(["--steps", "5", "--log-every", "2", "--vocab-size", "40", "--pairs", "4",
                             "--hidden-size", "32", "--num-layers", "1", "--batch-size", "4"])
    assert json.loads(capsys.readouterr().out) == out
    assert [p["step"] for p in out["curve"]] == [1, 3, 5]
    assert out["chance_loss"] == round(math.log(37), 4)
    # Five steps from random weights stay near chance: nothing has formed yet.
    assert out["formed_at"] is None and out["final_loss"] > 2.5
    assert out["settings"]["lr"] == 1e-3 and out["machine"]["cores"] >= 1
