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
    [warm] = saved["results"]["warm_start"]
    assert warm["seed"] == 0 and warm["steps"] == 0 and 0.0 <= warm["accuracy"] <= 1.0
    assert warm["accuracy"] == saved["results"]["grpo"][0]["val_before"]["accuracy"]
    assert saved["warm_start_check"]["consistent"]
    assert len(list((tmp_path / "ws").glob("*.pt"))) == 1
    table = (out / "ablation.md").read_text()
    for variant in ("warm_start", "grpo", "rerec"):
        assert f"| {variant} | 1/1 | " in table
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not ab.any_failed(doc)
