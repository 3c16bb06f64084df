"""The validate/test per-type tables state the protocol that produced them."""

from __future__ import annotations

from pathlib import Path

from rerec.eval.report import PROTOCOLS, EvalRecord, aggregate, protocol_line, write_report


def test_tables_state_their_protocol(tmp_path: Path) -> None:
    result = aggregate([EvalRecord("q", "explicit", "x", ["Heat"], [1], ["exact"], [1])], k=1)
    assert result["protocol"] == "corrected"
    _, md = write_report(result, tmp_path, "test_metrics")
    text = md.read_text()
    assert text.startswith("# test_metrics (K = 1)\n\nScored with the **corrected** protocol: titles matched")
    assert protocol_line("official") == f"Scored with the **official** protocol: {PROTOCOLS['official']}."
    _, md = write_report({k: v for k, v in result.items() if k != "protocol"}, tmp_path, "old")
    assert "**corrected** protocol" in md.read_text()  # a result written before the key existed
