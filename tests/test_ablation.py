"""The ablation runner (``benchmarks/ablation.py``): aggregation on hand-made results, the variants'
resolved configs, and one end-to-end study of 2 variants × 1 seed at toy budgets (wiring, not learning)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _load_ablation():
    spec = importlib.util.spec_from_file_location("rerec_ablation_benchmark", REPO / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


ab = _load_ablation()
TYPES = ("explicit", "implicit")


def _rec(seed: int, acc: float, by_type: tuple[float, float], before: float = 0.25) -> dict[str, Any]:
    return {"seed": seed, "accuracy": acc, "accuracy_by_type": dict(zip(TYPES, by_type)), "wall_time_s": 10.0,
            "steps": 4, "val_before": {"accuracy": before, "accuracy_by_type": {t: before for t in TYPES}}}


def _failed(seed: int) -> dict[str, Any]:
    return {"seed": seed, "accuracy": None, "accuracy_by_type": {}, "wall_time_s": None, "steps": None,
            "error": "exit code 1: RuntimeError: boom"}


# ------------------------------------------------------------------------------------ aggregation
def test_mean_std_uses_the_sample_std() -> None:
    mean, std = ab.mean_std([0.5, 0.7])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(math.sqrt(0.02))  # (0.1² + 0.1²) / (2 − 1); the population std would be 0.1
    assert ab.mean_std([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError):
        ab.mean_std([])


def test_format_mean_std() -> None:
    assert ab.format_mean_std([0.5, 0.7]) == "0.600 ± 0.141"
    assert ab.format_mean_std([0.5]) == "0.500 ± 0"
    assert ab.format_mean_std([]) == "—"
    assert ab.format_mean_std([0.25, 0.5, 0.75], digits=2) == "0.50 ± 0.25"


def test_summarise_and_table_delta_vs_grpo_and_failures() -> None:
    results = {
        "warm_start": [_rec(0, 0.25, (0.2, 0.3)), _rec(1, 0.25, (0.2, 0.3))],
        "grpo": [_rec(0, 0.4, (0.3, 0.5)), _rec(1, 0.6, (0.5, 0.7))],
        "rerec": [_rec(1, 0.65, (0.6, 0.7)), _rec(0, 0.55, (0.5, 0.6)), _failed(2)],
        "rloo": [_failed(0), _failed(1)],
    }
    summaries = ab.summarise(results)
    assert summaries["rerec"].overall == [0.55, 0.65]  # seed order
    assert summaries["rerec"].delta == pytest.approx(0.1)  # 0.60 − 0.50
    assert summaries["grpo"].delta is None
    assert summaries["rloo"].delta is None and summaries["rloo"].failed == [(0, results["rloo"][0]["error"]),
                                                                            (1, results["rloo"][1]["error"])]
    assert summaries["rerec"].by_type["explicit"] == [0.5, 0.6]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in ab.markdown_table(summaries).splitlines()[2:]}
    assert rows["grpo"] == "| grpo | 2/2 | 0.500 ± 0.141 | 0.400 ± 0.141 | 0.600 ± 0.141 | — |"
    assert rows["rerec"] == "| rerec | 2/3 (failed: seed 2) | 0.600 ± 0.071 | 0.550 ± 0.071 | 0.650 ± 0.071 | +0.100 |"
    assert rows["warm_start"].endswith("| -0.250 |")
    assert "**failed**" in rows["rloo"] and "n/a (all runs failed)" in rows["rloo"]


def test_table_without_grpo_says_so() -> None:
    table = ab.markdown_table(ab.summarise({"rerec": [_rec(0, 0.5, (0.5, 0.5))]}))
    assert "| rerec | 1/1 | 0.500 ± 0 | 0.500 ± 0 | 0.500 ± 0 | n/a (grpo failed or absent) |" in table


def test_warm_start_records_once_per_seed_and_flags_mismatches() -> None:
    results = {"grpo": [_rec(0, 0.4, (0.3, 0.5)), _rec(1, 0.5, (0.5, 0.5))],
               "rerec": [_rec(0, 0.6, (0.6, 0.6)), _failed(1)]}
    records, check = ab.warm_start_results(results, ["grpo", "rerec"])
    assert [(r["seed"], r["accuracy"], r["from"]) for r in records] == [(0, 0.25, "grpo"), (1, 0.25, "grpo")]
    assert check == {"consistent": True, "mismatches": [], "same_across_seeds": True}
    results["rerec"][0]["val_before"]["accuracy"] = 0.3
    _, check = ab.warm_start_results(results, ["grpo", "rerec"])
    assert not check["consistent"] and check["mismatches"] == [
        "seed 0: rerec started at val_before 0.3000, grpo at 0.2500"]
    results["grpo"][1]["val_before"]["accuracy"] = 0.3
    records, check = ab.warm_start_results({"grpo": results["grpo"]}, ["grpo"])
    assert check["consistent"] and not check["same_across_seeds"]


def test_failed_run_record_keeps_the_error(tmp_path: Path) -> None:
    log = tmp_path / "fit.log"
    log.write_text("starting\nTraceback (most recent call last):\nValueError: bad field\n")
    record = ab.run_record(3, tmp_path, 1, 2.0, log)
    assert record["seed"] == 3 and record["accuracy"] is None
    assert record["error"].startswith("exit code 1: ") and "ValueError: bad field" in record["error"]
    record = ab.run_record(3, tmp_path, 0, 2.0, log)
    assert record["error"].startswith("no summary.json written")


# ------------------------------------------------------------------------------------ sampled accuracy
# Hand-made run folders whose summary.json has val_before/val_after.sampled as the trainer writes it.
WARM_SAMPLED = (0.2, (0.1, 0.3), 0.5)  # the warm start: sampled accuracy, per type, pass@n


def _sampled(acc: float, by_type: tuple[float, float], pass_at_n: float) -> dict[str, Any]:
    return {"samples": 16, "accuracy": acc, "accuracy_by_type": dict(zip(TYPES, by_type)), "pass_at_n": pass_at_n,
            "pass_at_n_by_type": {t: pass_at_n for t in TYPES}, "count": 6, "count_by_type": {t: 3 for t in TYPES},
            "temperature": 1.0, "top_p": 1.0, "top_k": None, "max_new_tokens": 48}


def _val(acc: float, by_type: tuple[float, float], sampled: tuple | None) -> dict[str, Any]:
    val = {"accuracy": acc, "accuracy_by_type": dict(zip(TYPES, by_type)), "count": 6}
    return {**val, "sampled": _sampled(*sampled)} if sampled else val


def _fake_run(root: Path, variant: str, seed: int, greedy: tuple[float, tuple[float, float]],
              sampled: tuple | None, rc: int = 0) -> dict[str, Any]:
    """The record of a run folder holding ``summary.json`` (its val_before is the shared warm start)."""
    run_dir = root / "runs" / variant / f"seed{seed}"
    (run_dir / "version_0").mkdir(parents=True)
    log = run_dir / "fit.log"
    log.write_text("python -m rerec fit\n" + ("RuntimeError: boom\n" if rc else ""))
    summary = {"val_before": _val(0.25, (0.2, 0.3), WARM_SAMPLED if sampled else None),
               "val_after": _val(*greedy, sampled), "steps": 4, "wall_time_s": 12.0,
               "warm_start": {"cached": True, "time_s": 5.0}}
    if not rc:
        (run_dir / "version_0" / "summary.json").write_text(json.dumps(summary))
    return ab.run_record(seed, run_dir, rc, 13.0, log)


def _fake_study(root: Path) -> dict[str, Any]:
    results = {
        "grpo": [_fake_run(root, "grpo", 0, (0.4, (0.3, 0.5)), (0.30, (0.2, 0.4), 0.6)),
                 _fake_run(root, "grpo", 1, (0.6, (0.5, 0.7)), (0.36, (0.3, 0.42), 0.7))],
        "rloo": [_fake_run(root, "rloo", 0, (0.0, (0.0, 0.0)), None, rc=1)],
        "rerec": [_fake_run(root, "rerec", 1, (0.65, (0.6, 0.7)), (0.44, (0.40, 0.48), 0.85)),
                  _fake_run(root, "rerec", 0, (0.55, (0.5, 0.6)), (0.40, (0.35, 0.45), 0.75))],
        "rerec_no_qas": [_fake_run(root, "rerec_no_qas", 0, (0.5, (0.5, 0.5)), None)],  # eval_samples: 0
    }
    machine = {"cpu": "test cpu", "cores": 2, "torch": "2.x", "platform": "linux"}
    settings = {"steps": 4, "seeds": [0, 1], "variants": list(results), "jobs": 2}
    return ab.document(machine, "python benchmarks/ablation.py --test", settings, results)


def _rows(table: str) -> dict[str, str]:
    return {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}


def test_run_record_reads_sampled_accuracy_before_and_after(tmp_path: Path) -> None:
    record = _fake_run(tmp_path, "grpo", 0, (0.4, (0.3, 0.5)), (0.30, (0.2, 0.4), 0.6))
    assert "error" not in record
    assert record["accuracy"] == 0.4 and record["accuracy_by_type"] == {"explicit": 0.3, "implicit": 0.5}
    assert record["sampled_accuracy"] == 0.30 and record["pass_at_n"] == 0.6
    assert record["sampled_accuracy_by_type"] == {"explicit": 0.2, "implicit": 0.4}
    assert record["pass_at_n_by_type"] == {"explicit": 0.6, "implicit": 0.6}
    assert record["sampled"] == _sampled(0.30, (0.2, 0.4), 0.6)  # the raw dict, kept
    before = record["val_before"]
    assert before["accuracy"] == 0.25 and before["sampled_accuracy"] == 0.2 and before["pass_at_n"] == 0.5
    assert before["sampled_accuracy_by_type"] == {"explicit": 0.1, "implicit": 0.3}
    assert before["sampled"] == _sampled(*WARM_SAMPLED)
    unsampled = _fake_run(tmp_path, "rerec", 0, (0.5, (0.5, 0.5)), None)
    assert unsampled["accuracy"] == 0.5 and "error" not in unsampled
    assert unsampled["sampled_accuracy"] is None and unsampled["pass_at_n"] is None and unsampled["sampled"] is None
    assert unsampled["sampled_accuracy_by_type"] == {} and unsampled["val_before"]["sampled_accuracy"] is None
    failed = _fake_run(tmp_path, "rloo", 0, (0.0, (0.0, 0.0)), None, rc=1)
    assert failed["accuracy"] is None and failed["sampled_accuracy"] is None and failed["error"].startswith("exit code 1")


def test_study_outputs_sampled_accuracy_first_and_greedy_beside(tmp_path: Path) -> None:
    doc = _fake_study(tmp_path)
    ab.write_outputs(tmp_path, doc)
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert list(saved["results"]) == ["warm_start", "grpo", "rloo", "rerec", "rerec_no_qas"]
    warm = saved["results"]["warm_start"]
    assert [(r["seed"], r["from"], r["accuracy"], r["sampled_accuracy"], r["pass_at_n"]) for r in warm] == [
        (0, "grpo", 0.25, 0.2, 0.5), (1, "grpo", 0.25, 0.2, 0.5)]
    assert warm[0]["sampled_accuracy_by_type"] == {"explicit": 0.1, "implicit": 0.3} and warm[0]["steps"] == 0
    assert saved["warm_start_check"] == {"consistent": True, "mismatches": [], "same_across_seeds": True}
    rerec = saved["results"]["rerec"]
    assert [(r["seed"], r["accuracy"], r["sampled_accuracy"]) for r in rerec] == [(0, 0.55, 0.40), (1, 0.65, 0.44)]
    assert saved["results"]["rerec_no_qas"][0]["sampled_accuracy"] is None

    summaries = ab.summarise(saved["results"])
    assert summaries["rerec"].sampled == [0.40, 0.44] and summaries["rerec"].pass_at_n == [0.75, 0.85]
    assert summaries["rerec"].sampled_delta == pytest.approx(0.09)  # 0.42 − 0.33
    assert summaries["rerec"].delta == pytest.approx(0.1)  # greedy: 0.60 − 0.50
    assert summaries["rerec_no_qas"].sampled == [] and summaries["rerec_no_qas"].sampled_delta is None

    table = ab.sampled_table(summaries)
    assert table.splitlines()[0] == ("| variant | runs | sampled overall | explicit | implicit | pass@n | "
                                     "greedy overall | Δ sampled vs GRPO |")
    rows = _rows(table)
    # grpo: sampled 0.30, 0.36 → 0.33 ± √(2·0.03²) = 0.042; explicit 0.2, 0.3; implicit 0.4, 0.42; pass 0.6, 0.7
    assert rows["grpo"] == "| grpo | 2/2 | 0.330 ± 0.042 | 0.250 ± 0.071 | 0.410 ± 0.014 | 0.650 ± 0.071 | 0.500 ± 0.141 | — |"
    assert rows["rerec"] == "| rerec | 2/2 | 0.420 ± 0.028 | 0.375 ± 0.035 | 0.465 ± 0.021 | 0.800 ± 0.071 | 0.600 ± 0.071 | +0.090 |"
    assert rows["warm_start"] == ("| warm_start | 2/2 | 0.200 ± 0.000 | 0.100 ± 0.000 | 0.300 ± 0.000 | 0.500 ± 0.000 "
                                  "| 0.250 ± 0.000 | -0.130 |")
    assert rows["rerec_no_qas"] == "| rerec_no_qas | 1/1 | — | — | — | — | 0.500 ± 0 | — |"
    assert rows["rloo"] == "| rloo | 0/1 (failed: seed 0) | **failed** | — | — | — | **failed** | n/a (all runs failed) |"

    md = (tmp_path / "ablation.md").read_text()
    sampled_at, greedy_at = md.index("## Sampled accuracy (primary)"), md.index("## Greedy accuracy per query type")
    assert sampled_at < md.index(table) < greedy_at < md.index(ab.markdown_table(summaries))
    for phrase in ("n = 16 answers sampled as the rollouts are (temperature 1.0, top-p 1.0, top-k off)",
                   "each of the 6 held-out validation queries", "NDCG@1 (= accuracy on the candidate task",
                   "the score is the mean over queries and samples", "`warm_start` is the shared warm-start checkpoint before RL",
                   "Every variant's before and after come from the same warm start: all 5 finished runs",
                   "(sampled 0.200, greedy 0.250;", "5 of them loaded it from the cache",
                   "—: no sampled evaluation in these runs", "- rloo seed 0: exit code 1: "):
        assert phrase in md, phrase
    assert "WARNING" not in md
    assert "| rerec | 2/2 | 0.600 ± 0.071 | 0.550 ± 0.071 | 0.650 ± 0.071 | +0.100 |" in md  # greedy table as before
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_warm_start_check_compares_sampled_accuracy(tmp_path: Path) -> None:
    doc = _fake_study(tmp_path)
    results = {k: v for k, v in doc["results"].items() if k != ab.WARM_START}
    results["rerec"][0]["val_before"]["sampled_accuracy"] = 0.21  # same greedy start, other sampled score
    _, check = ab.warm_start_results(results, list(results))
    assert check["mismatches"] == ["seed 0: rerec started at sampled val_before 0.2100, grpo at 0.2000"]
    doc = ab.document(doc["machine"], doc["command"], doc["settings"], results)
    md = ab.render_markdown(doc)
    assert "**WARNING: runs of the same seed started from different warm starts:**" in md
    assert "Every variant's before and after" not in md


def test_runs_without_any_sampled_evaluation_still_render(tmp_path: Path) -> None:
    results = {"grpo": [_fake_run(tmp_path, "grpo", 0, (0.4, (0.3, 0.5)), None)],
               "rerec": [_fake_run(tmp_path, "rerec", 0, (0.5, (0.5, 0.5)), None)]}
    doc = ab.document({"cpu": "c", "cores": 2, "torch": "t", "platform": "p"}, "cmd",
                      {"steps": 4, "seeds": [0], "variants": ["grpo", "rerec"], "jobs": 1}, results)
    assert doc["results"]["warm_start"][0]["sampled_accuracy"] is None and doc["warm_start_check"]["consistent"]
    ab.write_outputs(tmp_path, doc)
    md = (tmp_path / "ablation.md").read_text()
    assert "No run has a sampled evaluation (`eval_samples: 0`)" in md
    assert "| variant | runs | sampled overall | pass@n | greedy overall | Δ sampled vs GRPO |" in md
    assert "| rerec | 1/1 | — | — | 0.500 ± 0 | — |" in md and "| grpo | 1/1 | — | — | 0.400 ± 0 | — |" in md
    assert "(sampled —, greedy 0.250;" in md
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ variants
def _resolved(variant: str) -> dict[str, Any]:
    from rerec.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*ab.fit_args(ab.VARIANTS[variant], 7, 3, Path("/tmp/unused")), "--print_config"])
    return yaml.safe_load(out.getvalue())


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def test_each_variant_differs_from_rerec_only_where_it_should(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.cli import instantiate_class

    monkeypatch.chdir(REPO)  # the configs are repository-relative, as in the runner's subprocesses
    monkeypatch.setattr(sys, "argv", ["rerec"])  # LightningCLI warns when both argv and args are given
    adv, rew, cur = "model.init_args.advantage", "model.init_args.reward_funcs", "data.init_args.curriculum.mode"
    grpo_like = {rew, f"{adv}.class_path", cur}
    expected = {
        "grpo": grpo_like, "rloo": grpo_like, "reinforce_pp": grpo_like, "rerec": set(),
        "rerec_no_raae": {f"{adv}.class_path"}, "rerec_no_qas": {rew},
        "rerec_no_pas": {rew}, "rerec_no_curriculum": {cur},
        "rerec_rollout_baseline": set(), "rerec_kg_verify": set(),  # RAAE options only: checked below
    }
    raae_options = {"rerec_rollout_baseline": {"baseline": "rollouts"}, "rerec_kg_verify": {"kg_verify": True}}
    classes = {"grpo": "GRPOAdvantage", "rloo": "RLOOAdvantage", "reinforce_pp": "ReinforcePPAdvantage",
               "rerec_no_raae": "GRPOAdvantage"}
    assert set(expected) == set(ab.VARIANTS)
    assert ab.STUDY_VARIANTS == ("grpo", "rloo", "reinforce_pp", "rerec", "rerec_no_raae", "rerec_no_qas",
                                 "rerec_no_pas", "rerec_no_curriculum")
    assert ab.parse_args([]).variants == list(ab.STUDY_VARIANTS)
    reference = _resolved("rerec")
    assert reference["seed_everything"] == 7 and reference["trainer"]["max_steps"] == 3
    assert reference["trainer"]["logger"]["init_args"]["save_dir"] == "/tmp/unused"
    flat_ref = _flat(reference)
    for name, keys in expected.items():
        config = _resolved(name)
        flat = _flat(config)
        # advantage init_args legitimately change with the estimator's class: compared via the class
        changed = {k for k in flat_ref.keys() | flat.keys()
                   if flat_ref.get(k) != flat.get(k) and not k.startswith(f"{adv}.init_args")}
        assert changed == keys, name
        advantage = config["model"]["init_args"]["advantage"]
        assert advantage["class_path"].endswith(classes.get(name, "RAAEAdvantage")), name
        instantiate_class((), advantage)  # the estimator accepts the init_args it ends up with
        if name in raae_options:
            ref_args = reference["model"]["init_args"]["advantage"]["init_args"]
            assert advantage["init_args"] == {**ref_args, **raae_options[name]}, name
            assert all(ref_args[k] != v for k, v in raae_options[name].items()), name
        if name == "rerec_no_raae":  # only the estimator changes, not the reward scaling
            assert advantage["init_args"]["scale_rewards"] == reference["model"]["init_args"]["advantage"][
                "init_args"]["scale_rewards"]
        components = {f["class_path"].rsplit(".", 1)[-1] for f in flat[rew]}
        graph = {"QASReward", "PASReward"}
        missing = {"grpo": graph, "rloo": graph, "reinforce_pp": graph, "rerec_no_qas": {"QASReward"},
                   "rerec_no_pas": {"PASReward"}}
        assert components == {"FormatReward", "NDCGReward", *graph} - missing.get(name, set()), name
        if keys & {cur}:
            assert flat[cur] == "static", name


# ------------------------------------------------------------------------------------ end to end
SMALL = [
    "--data.init_args.synthetic.num_items=300", "--data.init_args.synthetic.num_users=80",
    "--data.init_args.synthetic.num_explicit=40", "--data.init_args.synthetic.num_implicit=20",
    "--data.init_args.synthetic.num_misinformed=20", "--data.init_args.synthetic.num_interest_records=6",
    "--data.init_args.batch_size=2", "--data.init_args.max_eval_queries=6", "--data.init_args.eval_batch_size=6",
    "--model.init_args.tiny.hidden_size=32", "--model.init_args.tiny.num_layers=1",
    "--model.init_args.warm_start.steps=3", "--model.init_args.warm_start.copy_steps=2",
    "--model.init_args.generation.num_generations=2",
    "--model.init_args.generation.max_completion_length=8", "--model.init_args.graph.inline_lightgcn_epochs=1",
]


def test_study_of_two_variants_writes_json_table_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    extra = [*SMALL, f"--data.init_args.world_dir={tmp_path / 'world'}",
             f"--model.init_args.warm_start.cache_dir={tmp_path / 'ws'}"]
    out = tmp_path / "study"
    doc = ab.main(["--out", str(out), "--variants", "grpo", "rerec", "--seeds", "0", "--steps", "2",
                   "--jobs", "2", "--extra-args", " ".join(extra)])
    saved = json.loads((out / "ablation.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    assert set(saved) == {"machine", "command", "settings", "results", "warm_start_check"}
    assert {"cpu", "cores", "torch"} <= set(saved["machine"])
    assert saved["command"].startswith("python benchmarks/ablation.py --out ")
    assert saved["settings"]["steps"] == 2 and saved["settings"]["seeds"] == [0]
    assert list(saved["results"]) == ["warm_start", "grpo", "rerec"]
    for variant in ("grpo", "rerec"):
        [record] = saved["results"][variant]
        assert "error" not in record, record.get("error")
        assert record["seed"] == 0 and record["steps"] == 2 and record["wall_time_s"] > 0
        assert 0.0 <= record["accuracy"] <= 1.0
        assert set(record["accuracy_by_type"]) <= set(ab.QUERY_TYPES) and record["accuracy_by_type"]
        assert record["warm_start"]["cached"] is True  # trained once by the warm-up, loaded by both runs
        config = next(Path(record["run_dir"]).rglob("config.yaml")).read_text()
        assert ("GRPOAdvantage" if variant == "grpo" else "RAAEAdvantage") in config
        # tiny.yaml's eval_samples: 16, before and after RL
        assert record["sampled"]["samples"] == 16 and record["sampled_accuracy"] == record["sampled"]["accuracy"]
        assert 0.0 <= record["sampled_accuracy"] <= record["pass_at_n"] <= 1.0
        assert record["val_before"]["sampled"]["samples"] == 16 and record["val_before"]["sampled_accuracy"] is not None
    [warm] = saved["results"]["warm_start"]
    assert warm["seed"] == 0 and warm["steps"] == 0 and 0.0 <= warm["accuracy"] <= 1.0
    assert warm["accuracy"] == saved["results"]["grpo"][0]["val_before"]["accuracy"]
    assert warm["sampled_accuracy"] == saved["results"]["grpo"][0]["val_before"]["sampled_accuracy"]
    # the same checkpoint scored on the same eval_seed stream: rerec's sampled start equals grpo's
    assert warm["sampled_accuracy"] == saved["results"]["rerec"][0]["val_before"]["sampled_accuracy"]
    assert saved["warm_start_check"]["consistent"]
    assert len(list((tmp_path / "ws").glob("*.pt"))) == 1
    table = (out / "ablation.md").read_text()
    for variant in ("warm_start", "grpo", "rerec"):
        assert table.count(f"| {variant} | 1/1 | ") == 2  # the sampled table and the greedy table
    assert "## Sampled accuracy (primary)" in table and "n = 16 answers sampled" in table
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not ab.any_failed(doc)
