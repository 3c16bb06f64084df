"""``benchmarks/policy_probe.py`` on a small world and a 1-layer model: the wiring and the JSON contract
(the numbers themselves are measured on the default world, docs/tiny-world.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import policy_probe  # noqa: E402

SMALL = [
    "--data.init_args.synthetic.num_items=300", "--data.init_args.synthetic.num_users=80",
    "--data.init_args.synthetic.num_explicit=40", "--data.init_args.synthetic.num_implicit=20",
    "--data.init_args.synthetic.num_misinformed=20", "--data.init_args.synthetic.num_interest_records=6",
    "--data.init_args.max_eval_queries=6", "--data.init_args.eval_batch_size=6",
    "--model.init_args.tiny.hidden_size=32", "--model.init_args.tiny.num_layers=1",
    "--model.init_args.warm_start.steps=3", "--model.init_args.warm_start.copy_steps=2",
    "--model.init_args.generation.max_completion_length=8",
    "--model.init_args.graph.inline_lightgcn_epochs=1",
]


def small_model(tmp_path: Path):
    """The probe's model and data on the small world, with its own world and warm-start folders."""
    return policy_probe.build(str(REPO / "configs/tiny.yaml"), [
        *SMALL, f"--data.init_args.world_dir={tmp_path / 'world'}",
        f"--model.init_args.warm_start.cache_dir={tmp_path / 'ws'}",
    ])

def test_probe_reports_every_measurement(tmp_path: Path, capsys) -> None:
    out = policy_probe.main([
        "--config", str(REPO / "configs/tiny.yaml"), "--samples", "3", "--train-queries", "4", *SMALL,
        f"--data.init_args.world_dir={tmp_path / 'world'}",
        f"--model.init_args.warm_start.cache_dir={tmp_path / 'ws'}",
    ])
    assert out["val_queries"] == 6 and out["machine"]["cores"] >= 1
    greedy, sampled, forced = out["greedy"], out["sampled"], out["teacher_forced"]
    assert 0.0 <= greedy["accuracy"] <= 1.0
    assert greedy["off_candidate"] is None or 0.0 <= greedy["off_candidate"] <= 1.0
    assert sum(t["count"] for t in greedy["by_type"].values()) == 6
    assert sampled["count"] == 6 and 0.0 <= sampled["accuracy"] <= sampled["pass@3"] <= 1.0
    assert 0.0 <= forced["gold_is_argmax"] <= 1.0 and 0.0 < forced["candidate_mass"] <= 1.0 + 1e-6
    assert set(out["warm_start_queries"]) == {"seen_by_warm_start", "rl_training"}
    assert '"teacher_forced"' in capsys.readouterr().out  # one JSON object on stdout


def test_evaluation_records_carry_the_candidates(tmp_path: Path) -> None:
    model, dm = small_model(tmp_path)
    tasks = dm.tasks["val"][:3]
    records = model.evaluator.generate_answers(tasks)
    assert [r.candidate_item_ids for r in records] == [list(t.candidate_ids) for t in tasks]
    assert all(len(r.candidate_item_ids) == len(tasks[0].candidate_ids) > 1 for r in records)


def test_sampled_evaluation_is_seeded_and_leaves_training_random_stream(tmp_path: Path) -> None:
    """Same policy, same score whatever the global RNG; the global RNG is where it was afterwards."""
    import torch

    model, dm = small_model(tmp_path)
    tasks = dm.tasks["val"]
    seen: list[list[str]] = []
    answer = model.evaluator.generate_answers

    def recording(batch, samples=0):
        records = answer(batch, samples=samples)
        seen.append([r.completion for r in records])
        return records

    model.evaluator.generate_answers = recording
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = model.evaluator.sampled(tasks, 4)
    assert torch.equal(torch.get_rng_state(), state)
    texts, seen[:] = list(seen), []
    torch.manual_seed(456)  # another global stream: the evaluation must not draw from it
    assert model.evaluator.sampled(tasks, 4) == first and seen == texts
    seen.clear()
    model.evaluator.seed = 1  # another evaluation stream: other samples (the model does sample)
    model.evaluator.sampled(tasks, 4)
    assert seen != texts
    assert first["count"] == len(tasks) and first["samples"] == 4
    assert 0.0 <= first["accuracy"] <= 1.0
    assert first["temperature"] == model.generation.temperature
    with pytest.raises(ValueError, match="samples must be >= 1"):
        model.evaluator.sampled(tasks, 0)


def test_sampled_answers_are_scored_against_their_own_task(tmp_path: Path, monkeypatch) -> None:
    """Row i of a generate call belongs to prompt i // n: a generator that boxes each prompt's own
    target must score 1.0 (a tiled instead of grouped pairing would score others' targets)."""
    model, dm = small_model(tmp_path)
    tasks = dm.tasks["val"]
    target = {tuple(model.prompt_ids[t.query_id]): dm.items[t.target_id].title for t in tasks}
    assert len(target) == len(tasks)  # every prompt distinct, so the fake below is unambiguous

    def fake_generate(prompt_ids, config, num_generations=None, greedy=False):
        n = num_generations or 1
        return SimpleNamespace(texts=[rf"\boxed{{{target[tuple(p)]}}}" for p in prompt_ids for _ in range(n)])

    monkeypatch.setattr(model.engine, "generate", fake_generate)
    out = model.evaluator.sampled(tasks, 3)
    assert out["accuracy"] == 1.0 and out["pass_at_n"] == 1.0


def test_warm_start_cache_survives_a_moved_folder(tmp_path: Path) -> None:
    """The cache key holds what determines the weights, not where they are kept."""
    common = [*SMALL, f"--data.init_args.world_dir={tmp_path / 'world'}"]
    model, _ = policy_probe.build(str(REPO / "configs/tiny.yaml"),
                                  [*common, f"--model.init_args.warm_start.cache_dir={tmp_path / 'a'}"])
    assert model.summary["warm_start"]["cached"] is False
    (tmp_path / "a").rename(tmp_path / "b")
    model, _ = policy_probe.build(str(REPO / "configs/tiny.yaml"),
                                  [*common, f"--model.init_args.warm_start.cache_dir={tmp_path / 'b'}"])
    assert model.summary["warm_start"]["cached"] is True


def test_headline_is_sampled_accuracy_with_pass_at_n_and_greedy_beside() -> None:
    from rerec.rl.evaluation import headline, headline_line

    sampled = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "samples": 16, "count": 150}
    before = {"accuracy": 0.5, "count": 150, "sampled": {**sampled, "accuracy": 0.25, "pass_at_n": 0.6}}
    after = {"accuracy": 0.52, "count": 150, "sampled": {**sampled, "accuracy": 0.4, "pass_at_n": 0.7}}
    h = headline(before, after)
    assert h["metric"] == "sampled held-out accuracy" and h["change"] == pytest.approx(0.15)
    assert h["pass_at_n"] == {"n": 16, "before": 0.6, "after": 0.7}
    assert h["greedy"]["change"] == pytest.approx(0.02) and "16 samples of each of 150" in h["definition"]
    assert headline_line(h) == ("sampled held-out accuracy 0.250 -> 0.400 (+0.150); pass@16 0.600 -> 0.700; "
                                "greedy 0.500 -> 0.520")
    plain = headline({"accuracy": 0.5, "count": 150}, {"accuracy": 0.45, "count": 150})
    assert plain["metric"] == "greedy held-out accuracy" and plain["change"] == pytest.approx(-0.05)
