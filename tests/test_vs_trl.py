"""The TRL comparison's own parts, without TRL: the prompts both trainers get, the saved model's forced
completion length, and the shape of the JSON other scripts read."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _import(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_prompts_are_deterministic_and_name_every_candidate() -> None:
    assets = _import("_bench_assets")
    titles = assets.load_titles(None)
    spec = assets.PromptSpec(num_prompts=3, num_candidates=6, history=2, seed=1)
    prompts = assets.render_prompts(titles, spec)
    assert prompts == assets.render_prompts(titles, spec) and len(set(prompts)) == 3
    assert all(f"\n{i}. " in p for p in prompts for i in range(1, 7)) and "\n7. " not in prompts[0]


def test_saved_model_generates_exactly_the_budget(tmp_path: Path) -> None:
    """EOS is blocked before T by the saved generation config, on any ``generate`` that reads it."""
    assets = _import("_bench_assets")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = assets.ModelSpec(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32,
                            vocab_size=1000, tokenizer_vocab=400)
    path = assets.build_model_dir(tmp_path / "m", spec, assets.load_titles(None), min_new_tokens=6)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == 1000 and len(tok) <= 400 and tok.chat_template
    ids = tok(assets.render_prompts(assets.load_titles(None), assets.PromptSpec(1, 3, 1))[0], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**ids, max_new_tokens=6, do_sample=True)
    assert out.shape[1] - ids["input_ids"].shape[1] == 6 and tok.eos_token_id not in out[0, -6:].tolist()


def test_report_shape_and_ratios() -> None:
    vs = _import("vs_trl")

    def run(step: float, rss: float) -> dict:
        return {"step_s": [9.0, 9.0, step, step * 1.1, step * 0.9], "generate_s": [1.0] * 5, "score_s": [0.5] * 5,
                "update_s": [step - 1.5] * 5, "completion_tokens": [400] * 5, "peak_rss_gb": rss,
                "versions": {}}

    rerec = vs.summarize([run(1.0, 0.5), run(1.2, 0.6), run(0.8, 0.5)])
    trl = vs.summarize([run(2.0, 1.0)] * 3)
    assert rerec["step_s"] == {"median": 1.0, "min": 0.8, "max": 1.2}  # median of each run's steps 3..5
    assert rerec["tokens_per_s"]["median"] == 400.0
    result = {"name": "x", "step_time_ratio": rerec["step_s"]["median"] / trl["step_s"]["median"],
              "peak_memory_ratio": 0.5, "rerec": rerec, "trl": trl}
    table = vs.markdown({"results": [result]})
    assert "| x | 1.000 (1.000 / 0.500 / -0.500) | 2.000" in table and "0.50" in table
    assert [c.name for c in vs.quick_configs()] == [
        "tiny full β=0", "tiny full β=0.04 (reference copy)", "tiny LoRA β=0.04"]
    assert {c.max_completion_length for c in vs.sweep_configs([64, 512], 2, 4)} == {64, 512}
