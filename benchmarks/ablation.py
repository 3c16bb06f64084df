"""The paper's comparison in miniature: plain GRPO, RLOO, REINFORCE++, ReRec and ReRec's ablations on the
embedded synthetic world, each from the same cached warm-start checkpoint under the same RL budget; reports
held-out sampled accuracy (the headline) and greedy accuracy beside it, before and after RL.

    python benchmarks/ablation.py [--quick] [--out DIR] [--seeds 0 1 2] [--steps N]
        [--variants grpo rerec ...] [--jobs 2] [--extra-args "--model.init_args.tiny.hidden_size=64 ..."]

Every run is ``python -m rerec fit --config configs/tiny.yaml [variant overrides]`` in its own subprocess
(``OMP_NUM_THREADS=1``, offline), with the same ``--trainer.max_steps``, ``--seed_everything=<seed>`` and
its own run folder ``DIR/runs/<variant>/seed<k>``; ``--jobs`` runs go in parallel. A warm-up fit with
``max_steps=0`` first builds the world and trains (or loads) the warm start alone, so parallel runs only
load it from the shared cache (``warm_start.cache_dir``; its key does not include ``seed_everything``).

What it reports, from each run's ``summary.json`` (``val_before`` = the warm start before RL, ``val_after``
= after RL, both on the held-out validation queries):

- sampled accuracy (the headline): the mean NDCG@1 of ``eval_samples`` answers per query (16 in tiny.yaml)
  sampled as the rollouts are (same temperature, top-p, top-k), over every query and sample. NDCG@1 is the
  accuracy on the candidate task (1 when the chosen candidate is the held-out item). Sampled on its own
  stream seeded by ``eval_seed``, so one checkpoint always gets the same score. Also pass@n: the share of
  queries with at least one correct answer among their n samples.
- greedy accuracy: NDCG@1 of the greedy answer, beside it.

Outputs in DIR (default ``runs/ablation``), rewritten atomically after every finished run:

- ``ablation.json``: ``{"machine", "command", "settings", "results": {variant: [per-seed record]},
  "warm_start_check"}``; a record is ``{"seed", "accuracy", "accuracy_by_type", "sampled_accuracy",
  "sampled_accuracy_by_type", "pass_at_n", "pass_at_n_by_type", "sampled", "val_before", "wall_time_s",
  "steps", ...}`` with ``accuracy`` = greedy and ``sampled_accuracy`` = sampled accuracy after RL,
  ``sampled`` = ``val_after.sampled`` as written by the run, and ``val_before`` the same keys for the warm
  start. ``results["warm_start"]`` holds the warm start only (``val_before``), once per seed. Sampled keys
  are ``null`` (``{}`` per type) for runs without a sampled evaluation (``eval_samples: 0``). A failed run
  keeps its record with ``accuracy: null`` and an ``error``. ``warm_start_check``: whether every run of
  every variant and seed reported the same ``val_before`` (greedy and sampled), i.e. the same warm start.
- ``ablation.md``: the primary table of sampled accuracy (per variant: mean ± sample std over seeds,
  overall and per query type, pass@n, greedy overall beside, Δ sampled vs GRPO), then the greedy table
  (overall and per query type, Δ greedy vs GRPO); the metric's settings, the warm-start check and the
  failed runs.
- ``ablation.png``: per variant, sampled accuracy (solid bars) and greedy accuracy (lighter hatched bars
  beside), error bars = sample std over seeds, dots = seeds.

``--quick`` = one seed and ``QUICK_STEPS`` RL steps for every variant run (by default the paper's eight,
``STUDY_VARIANTS``; designed for < 15 min on 2 cores).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rerec.atomic import atomic_path, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = "configs/tiny.yaml"
GRPO_CONFIG = "configs/tiny-grpo.yaml"
# Budgets measured on the 2-core CPU machine: one RL step of tiny.yaml takes ~0.4 s alone (2 threads),
# ~0.55 s with two 1-thread jobs in parallel; each run adds ~25 s of start-up and greedy evaluation, and
# ~20 s more for tiny.yaml's sampled evaluation (eval_samples: 16; not re-timed in a full study); the
# warm start is trained once (~7 min with 1 thread).
STUDY_STEPS = 300  # as tiny.yaml; 8 variants × 3 seeds: 39–46 min measured with 2 jobs (budget: about an hour)
QUICK_STEPS = 150  # 8 variants × 1 seed < 15 minutes with 2 jobs
QUICK_SEEDS = (0,)
DEFAULT_SEEDS = (0, 1, 2)
BASELINE = "grpo"
WARM_START = "warm_start"
QUERY_TYPES = ("explicit", "implicit", "misinformed", "interest_based", "demographics")
_ADVANTAGE = "--model.init_args.advantage=rerec.rl.advantages."
RUN_ENV = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false",
}


def _without_reward(component: str) -> str:
    """An override of ``reward_funcs``: the base config's components less the one named ``component``."""
    funcs = yaml.safe_load((Path(__file__).resolve().parents[1] / BASE_CONFIG).read_text())["model"]["init_args"]["reward_funcs"]
    kept = [f for f in funcs if f["class_path"].rsplit(".", 1)[-1] != component]
    if len(kept) != len(funcs) - 1:
        raise ValueError(f"{BASE_CONFIG} has no reward component {component!r}")
    return "--model.init_args.reward_funcs=" + json.dumps(kept)


@dataclass(frozen=True)
class Variant:
    """One arm of the study: CLI arguments on top of ``--config configs/tiny.yaml``.

    Args:
        name: Key in ``ablation.json`` and row of the table.
        description: What differs from full ReRec / GRPO (for the table's legend).
        configs: Extra ``--config`` files, applied right after the base config (before ``--extra-args``).
        overrides: ``--key=value`` overrides, applied after ``--extra-args`` so that shared overrides
            cannot undo what defines the variant.
    """

    name: str
    description: str
    configs: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("grpo", "GRPO: NDCG reward only, sequence-level group advantages, no curriculum", (GRPO_CONFIG,)),
    Variant("rloo", "GRPO with RLOO advantages", (GRPO_CONFIG,), (_ADVANTAGE + "RLOOAdvantage",)),
    Variant("reinforce_pp", "GRPO with REINFORCE++ advantages", (GRPO_CONFIG,), (_ADVANTAGE + "ReinforcePPAdvantage",)),
    Variant("rerec", "ReRec: NDCG + QAS + PAS reward, RAAE, online curriculum"),
    # Same scale_rewards as ReRec's RAAE (tiny.yaml: false), so only the estimator changes.
    Variant("rerec_no_raae", "ReRec with GRPO advantages instead of RAAE", (),
            (_ADVANTAGE + "GRPOAdvantage", "--model.init_args.advantage.init_args.scale_rewards=false")),
    Variant("rerec_no_qas", "ReRec without QAS (its reward component removed)", (), (_without_reward("QASReward"),)),
    Variant("rerec_no_pas", "ReRec without PAS (its reward component removed)", (), (_without_reward("PASReward"),)),
    Variant("rerec_no_curriculum", "ReRec with static shuffling", (), ("--data.init_args.curriculum.mode=static",)),
    Variant("rerec_rollout_baseline", "ReRec with RAAE's token rewards compared with the group's mean rollout "
            "reward (baseline: rollouts)", (), ("--model.init_args.advantage.init_args.baseline=rollouts",)),
    Variant("rerec_kg_verify", "ReRec with KG-verified RAAE (segments asserting a fact the graph contradicts "
            "are penalised too)", (), ("--model.init_args.advantage.init_args.kg_verify=true",)),
)}


# The paper's comparison, run by default (the budgets above are measured on these 8); the RAAE options
# after them are run on request (--variants), docs/ablation.md "study 4".
STUDY_VARIANTS: tuple[str, ...] = ("grpo", "rloo", "reinforce_pp", "rerec", "rerec_no_raae", "rerec_no_qas",
                                   "rerec_no_pas", "rerec_no_curriculum")


# ================================================================================= runs
def fit_args(variant: Variant, seed: int, steps: int, run_dir: Path, extra: Sequence[str] = ()) -> list[str]:
    """Arguments of ``python -m rerec`` for one run of ``variant``."""
    args = ["fit", "--config", BASE_CONFIG]
    for config in variant.configs:
        args += ["--config", config]
    return [
        *args, *extra, *variant.overrides,
        f"--trainer.max_steps={steps}", f"--seed_everything={seed}",
        f"--trainer.default_root_dir={run_dir}", f"--trainer.logger.init_args.save_dir={run_dir}",
    ]


def _log_tail(path: Path, lines: int = 6) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def run_fit(args: Sequence[str], run_dir: Path) -> tuple[int, float, Path]:
    """Run ``python -m rerec <args>`` from the repository root into a fresh ``run_dir``.

    Returns (exit code, seconds, log file); stdout and stderr go to ``run_dir/fit.log``.
    """
    if run_dir.exists():  # a rerun must not mix with an older version_* folder
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    log_path = run_dir / "fit.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("python -m rerec " + shlex.join(args) + "\n")
        log.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "rerec", *args], cwd=REPO, env={**os.environ, **RUN_ENV},
            stdout=log, stderr=subprocess.STDOUT, check=False,
        )
    return proc.returncode, time.perf_counter() - start, log_path


def blank_record(seed: int) -> dict[str, Any]:
    """The keys every per-seed record has, unset (a failed run keeps them so)."""
    return {"seed": seed, "accuracy": None, "accuracy_by_type": {}, "sampled_accuracy": None,
            "sampled_accuracy_by_type": {}, "pass_at_n": None, "pass_at_n_by_type": {}, "sampled": None,
            "wall_time_s": None, "steps": None}


def held_out_fields(val: dict[str, Any]) -> dict[str, Any]:
    """The record's fields of one held-out evaluation (``val_before`` or ``val_after`` of ``summary.json``).

    Greedy: ``accuracy``, ``accuracy_by_type``, ``count``. Sampled, from ``val["sampled"]``:
    ``sampled_accuracy``, ``sampled_accuracy_by_type``, ``pass_at_n``, ``pass_at_n_by_type`` and the raw
    dict as ``sampled``; ``None`` (``{}`` per type) when the run had no sampled evaluation.
    """
    sampled = val.get("sampled")

    def floats(mapping: dict[str, Any]) -> dict[str, float]:
        return {k: float(v) for k, v in mapping.items()}

    return {
        "accuracy": float(val["accuracy"]), "accuracy_by_type": floats(val["accuracy_by_type"]),
        "count": val.get("count"),
        "sampled_accuracy": None if sampled is None else float(sampled["accuracy"]),
        "sampled_accuracy_by_type": {} if sampled is None else floats(sampled["accuracy_by_type"]),
        "pass_at_n": None if sampled is None else float(sampled["pass_at_n"]),
        "pass_at_n_by_type": {} if sampled is None else floats(sampled["pass_at_n_by_type"]),
        "sampled": sampled,
    }


def run_record(seed: int, run_dir: Path, rc: int, seconds: float, log_path: Path) -> dict[str, Any]:
    """The per-seed record of a finished run: read from its ``summary.json``, or the error."""
    record: dict[str, Any] = {
        **blank_record(seed), "process_time_s": round(seconds, 1), "run_dir": str(run_dir), "log": str(log_path),
    }
    summaries = sorted(run_dir.rglob("summary.json"), key=lambda p: p.stat().st_mtime)
    if rc != 0 or not summaries:
        why = f"exit code {rc}" if rc != 0 else "no summary.json written"
        record["error"] = f"{why}: {_log_tail(log_path)}"
        return record
    try:
        summary = json.loads(summaries[-1].read_text())
        record.update({
            **held_out_fields(summary["val_after"]),
            "wall_time_s": summary.get("wall_time_s"),
            "steps": summary.get("steps"),
            "val_before": held_out_fields(summary["val_before"]),
            "warm_start": summary.get("warm_start"),
            "summary": str(summaries[-1]),
        })
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        record["error"] = f"{summaries[-1]}: unreadable summary ({type(err).__name__}: {err})"
    return record


# What must agree between runs that start from the same warm start: (label, overall key, per-type key).
_WARM_START_KEYS = (("", "accuracy", "accuracy_by_type"),
                    ("sampled ", "sampled_accuracy", "sampled_accuracy_by_type"))


def warm_start_results(results: dict[str, list[dict[str, Any]]], order: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Warm-start-only records (``val_before``), one per seed, and the check that runs agree on it.

    The record of a seed comes from its first finished run in ``order``; every other run of the seed must
    report the same ``val_before``, greedy and sampled (same cached checkpoint; greedy decoding, and
    sampling seeded by ``eval_seed``), and so should the seeds between them (``seed_everything`` is part
    of neither the warm start nor the sampled evaluation). Sampled scores are compared where both runs
    have one.
    """
    per_seed: dict[int, dict[str, Any]] = {}
    mismatches: list[str] = []
    for name in order:
        for rec in results.get(name, []):
            before = rec.get("val_before")
            if before is None:
                continue
            seed = rec["seed"]
            first = per_seed.get(seed)
            if first is None:
                per_seed[seed] = {
                    **blank_record(seed), **before, "steps": 0, "from": name,
                    "wall_time_s": (rec.get("warm_start") or {}).get("time_s"),
                }
                continue
            for label, key, by_type in _WARM_START_KEYS:
                if before.get(key) is None or first.get(key) is None:
                    continue
                if before[key] != first[key] or before.get(by_type) != first.get(by_type):
                    mismatches.append(f"seed {seed}: {name} started at {label}val_before {before[key]:.4f}, "
                                      f"{first['from']} at {first[key]:.4f}")
    records = [per_seed[s] for s in sorted(per_seed)]
    values = {(r["accuracy"], r.get("sampled_accuracy")) for r in records}
    check = {"consistent": not mismatches, "mismatches": mismatches, "same_across_seeds": len(values) <= 1}
    return records, check


# ================================================================================= aggregation
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1); the std of a single value is 0."""
    if not values:
        raise ValueError("mean_std: no value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``"0.512 ± 0.034"``; ``"0.512 ± 0"`` for one value; ``"—"`` for none."""
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f} ± 0"


@dataclass
class VariantSummary:
    """Aggregate of one variant's per-seed records.

    Args:
        name: Variant name.
        overall: Successful runs' overall greedy accuracies, in seed order.
        by_type: Per query type, the successful runs' greedy accuracies.
        failed: ``(seed, error)`` of the failed runs.
        delta: Mean overall greedy accuracy minus the baseline's (``None`` for the baseline itself or when
            either has no successful run).
        sampled: Overall sampled accuracies of the successful runs that have one, in seed order.
        sampled_by_type: Per query type, their sampled accuracies.
        pass_at_n: Their pass@n.
        sampled_delta: As ``delta``, of the sampled accuracy.
    """

    name: str
    overall: list[float] = field(default_factory=list)
    by_type: dict[str, list[float]] = field(default_factory=dict)
    failed: list[tuple[int, str]] = field(default_factory=list)
    delta: float | None = None
    sampled: list[float] = field(default_factory=list)
    sampled_by_type: dict[str, list[float]] = field(default_factory=dict)
    pass_at_n: list[float] = field(default_factory=list)
    sampled_delta: float | None = None


def summarise(results: dict[str, list[dict[str, Any]]], baseline: str = BASELINE) -> dict[str, VariantSummary]:
    """Per-variant summaries in ``results`` order, with Δ of overall means (greedy and sampled) vs ``baseline``."""
    out: dict[str, VariantSummary] = {}
    for name, records in results.items():
        s = VariantSummary(name)
        for rec in sorted(records, key=lambda r: r["seed"]):
            if rec.get("error") or rec.get("accuracy") is None:
                s.failed.append((rec["seed"], rec.get("error") or "no accuracy"))
                continue
            s.overall.append(float(rec["accuracy"]))
            for qtype, acc in rec.get("accuracy_by_type", {}).items():
                s.by_type.setdefault(qtype, []).append(float(acc))
            if rec.get("sampled_accuracy") is None:
                continue
            s.sampled.append(float(rec["sampled_accuracy"]))
            for qtype, acc in (rec.get("sampled_accuracy_by_type") or {}).items():
                s.sampled_by_type.setdefault(qtype, []).append(float(acc))
            if rec.get("pass_at_n") is not None:
                s.pass_at_n.append(float(rec["pass_at_n"]))
        out[name] = s
    base = out.get(baseline)
    for values, delta in (("overall", "delta"), ("sampled", "sampled_delta")):
        if base is None or not getattr(base, values):
            continue
        base_mean = statistics.fmean(getattr(base, values))
        for name, s in out.items():
            if name != baseline and getattr(s, values):
                setattr(s, delta, statistics.fmean(getattr(s, values)) - base_mean)
    return out


def query_types(summaries: dict[str, VariantSummary], sampled: bool = False) -> list[str]:
    """Query types present in any summary (greedy, or ``sampled``): the canonical five first, then any
    other, sorted."""
    seen = {t for s in summaries.values() for t in (s.sampled_by_type if sampled else s.by_type)}
    return [t for t in QUERY_TYPES if t in seen] + sorted(seen - set(QUERY_TYPES))


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows]) + "\n"


def _runs_cell(s: VariantSummary) -> str:
    runs = f"{len(s.overall)}/{len(s.overall) + len(s.failed)}"
    if s.failed:
        runs += " (failed: " + ", ".join(f"seed {seed}" for seed, _ in s.failed) + ")"
    return runs


def _delta_cell(name: str, values: Sequence[float], delta: float | None, baseline: str, digits: int,
                no_values: str, no_base: str) -> str:
    """Δ of a row: ``no_values`` without values of its own, ``—`` on the baseline's row, ``no_base``
    when the baseline has none."""
    if not values:
        return no_values
    if name == baseline:
        return "—"
    return no_base if delta is None else f"{delta:+.{digits}f}"


def markdown_table(summaries: dict[str, VariantSummary], baseline: str = BASELINE, digits: int = 3) -> str:
    """The greedy table: one row per variant, runs, overall and per-type mean ± std of greedy accuracy,
    Δ overall vs ``baseline``."""
    types = query_types(summaries)
    rows = []
    for name, s in summaries.items():
        delta = _delta_cell(name, s.overall, s.delta, baseline, digits, "n/a (all runs failed)",
                            f"n/a ({baseline} failed or absent)")
        overall = format_mean_std(s.overall, digits) if s.overall else "**failed**"
        rows.append([name, _runs_cell(s), overall, *(format_mean_std(s.by_type.get(t, []), digits) for t in types),
                     delta])
    return _table(["variant", "runs", "overall", *types, f"Δ vs {baseline.upper()}"], rows)


def sampled_table(summaries: dict[str, VariantSummary], baseline: str = BASELINE, digits: int = 3) -> str:
    """The primary table: one row per variant, runs, sampled accuracy overall and per type (mean ± std),
    pass@n, greedy overall beside, Δ of the sampled overall mean vs ``baseline``. A variant without a
    sampled evaluation shows ``—`` in the sampled cells; one whose runs all failed, ``**failed**``."""
    types = query_types(summaries, sampled=True)
    base = summaries.get(baseline)
    no_base = (f"n/a ({baseline} failed or absent)" if base is None or not base.overall
               else f"n/a ({baseline}: no sampled)")
    rows = []
    for name, s in summaries.items():
        if not s.overall:
            rows.append([name, _runs_cell(s), "**failed**", *["—"] * len(types), "—", "**failed**",
                         "n/a (all runs failed)"])
            continue
        sampled = format_mean_std(s.sampled, digits)
        if s.sampled and len(s.sampled) < len(s.overall):
            sampled += f" ({len(s.sampled)} runs)"
        rows.append([name, _runs_cell(s), sampled,
                     *(format_mean_std(s.sampled_by_type.get(t, []), digits) for t in types),
                     format_mean_std(s.pass_at_n, digits), format_mean_std(s.overall, digits),
                     _delta_cell(name, s.sampled, s.sampled_delta, baseline, digits, "—", no_base)])
    head = ["variant", "runs", "sampled overall", *types, "pass@n", "greedy overall",
            f"Δ sampled vs {baseline.upper()}"]
    return _table(head, rows)


def sampled_settings(results: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """The distinct settings of the sampled evaluations in ``results`` (before and after RL): ``samples``,
    ``temperature``, ``top_p``, ``top_k``, ``count`` (queries), each a sorted list (empty when no run has
    a sampled evaluation)."""
    seen: dict[str, set[Any]] = {k: set() for k in ("samples", "temperature", "top_p", "top_k", "count")}
    for records in results.values():
        for rec in records:
            for sampled in (rec.get("sampled"), (rec.get("val_before") or {}).get("sampled")):
                for key, values in seen.items():
                    if sampled and sampled.get(key) is not None:
                        values.add(sampled[key])
    return {k: sorted(v) for k, v in seen.items()}


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def _accuracy(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _setting(values: Sequence[Any]) -> str:
    return " / ".join(map(str, values)) if values else "?"


def metric_text(results: dict[str, list[dict[str, Any]]]) -> str:
    """The exact definition of the primary table's metric, with the settings the runs used."""
    cfg = sampled_settings(results)
    if not cfg["samples"]:
        return ("No run has a sampled evaluation (`eval_samples: 0`): the sampled cells are —, and greedy "
                "accuracy (NDCG@1 of the greedy answer) is the only score.\n")
    top_k = "off" if cfg["top_k"] in ([], [0]) else _setting(cfg["top_k"])
    return (
        f"**Sampled accuracy** (primary): for each of the {_setting(cfg['count'])} held-out validation queries, "
        f"n = {_setting(cfg['samples'])} answers sampled as the rollouts are (temperature "
        f"{_setting(cfg['temperature'])}, top-p {_setting(cfg['top_p'])}, top-k {top_k}), each scored by NDCG@1 "
        "(= accuracy on the candidate task: 1 when the chosen candidate is the held-out item, else 0); the score "
        "is the mean over queries and samples. Per-type columns: the same over that type's queries. pass@n: share of "
        "queries with at least one correct answer among their n samples. Greedy overall: NDCG@1 of the greedy "
        "answer of the same checkpoint. Δ: sampled mean minus GRPO's. Sampling runs on its own stream seeded by "
        "`eval_seed`, so one checkpoint always gets the same score.\n"
    )


def warm_start_text(doc: dict[str, Any]) -> str:
    """What ``warm_start_check`` says: that every run started from the same warm start, or the warnings."""
    check = doc.get("warm_start_check") or {}
    runs = [rec for name, records in doc["results"].items() if name != WARM_START for rec in records
            if rec.get("val_before")]
    if check.get("mismatches"):
        return "\n".join(["**WARNING: runs of the same seed started from different warm starts:**\n",
                          *(f"- {m}" for m in check["mismatches"])]) + "\n"
    if not check.get("same_across_seeds", True):
        return "**WARNING: the warm start differs between seeds** (expected one shared checkpoint).\n"
    if not runs or not check:
        return ""
    warm = (doc["results"].get(WARM_START) or [runs[0]["val_before"]])[0]
    cached = sum(bool((rec.get("warm_start") or {}).get("cached")) for rec in runs)
    return (
        f"Every variant's before and after come from the same warm start: all {len(runs)} finished runs, of "
        f"every variant and seed, report the same `val_before` (sampled {_accuracy(warm.get('sampled_accuracy'))}, "
        f"greedy {_accuracy(warm.get('accuracy'))}; `warm_start_check` in ablation.json), and {cached} of them "
        "loaded it from the cache the warm-up filled.\n"
    )


def render_markdown(doc: dict[str, Any]) -> str:
    """``ablation.md``: context (machine, command, budget), the sampled and greedy tables, the warm-start
    check, failures."""
    settings, machine = doc["settings"], doc["machine"]
    summaries = summarise(doc["results"])
    parts = [
        "# ReRec ablation on the embedded synthetic world\n",
        f"Held-out accuracy after {settings['steps']} RL steps (`val_after`), mean ± sample std over seeds "
        f"{settings['seeds']}. `warm_start` is the shared warm-start checkpoint before RL (`val_before`), the "
        "start of every variant.\n",
        f"- command: `{doc['command']}`",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, {machine['platform']}",
        f"- runs in parallel: {settings['jobs']}; total time: {_minutes(settings.get('total_time_s'))}\n",
        warm_start_text(doc),
        "## Sampled accuracy (primary)\n",
        metric_text(doc["results"]),
        sampled_table(summaries),
    ]
    if any(s.overall and not s.sampled for s in summaries.values()):
        parts.append("—: no sampled evaluation in these runs (`eval_samples: 0`).\n")
    parts += [
        "## Greedy accuracy per query type\n",
        "Held-out NDCG@1 of the greedy answer, overall and per query type; Δ: greedy mean minus GRPO's.\n",
        markdown_table(summaries),
    ]
    failed = [(name, seed, err) for name, s in summaries.items() for seed, err in s.failed]
    if failed:
        parts.append("## Failed runs\n")
        parts += [f"- {name} seed {seed}: {err}" for name, seed, err in failed] + [""]
    parts.append("## Variants\n")
    parts += [f"- `{name}`: {VARIANTS[name].description}" for name in summaries if name in VARIANTS]
    return "\n".join(parts) + "\n"


# ================================================================================= chart
_COLOURS = {WARM_START: "#bdbdbd", BASELINE: "#e6550d", "rloo": "#fdae6b", "reinforce_pp": "#fdae6b",
            "rerec": "#08519c"}
_ABLATION_COLOUR = "#6baed6"


def _bars(ax: Any, x: float, values: Sequence[float], colour: str, width: float, **style: Any) -> float:
    """One bar at ``x``: mean of ``values``, error bar = sample std, dots = the values; returns its top."""
    mean, std = mean_std(values)
    ax.bar(x, mean, width, color=colour, edgecolor="black", linewidth=0.8, zorder=2, **style)
    ax.errorbar(x, mean, yerr=std, color="black", capsize=4, linewidth=1.2, zorder=3)
    spread = 0.35 * width
    offsets = [0.0] if len(values) == 1 else [-spread + 2 * spread * i / (len(values) - 1) for i in range(len(values))]
    ax.scatter([x + o for o in offsets], values, s=14, color="black", zorder=4)
    return max(mean + std, *values)


def plot(doc: dict[str, Any], path: Path) -> None:
    """Per variant, sampled accuracy (solid bar, the headline) and greedy accuracy (lighter hatched bar
    beside it); error bars = sample std over seeds, dots = seeds. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    summaries = summarise(doc["results"])
    names = list(summaries)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(names) + 2), 5.4), dpi=120)
    top, width = 0.05, 0.38
    greedy_style = {"alpha": 0.45, "hatch": ".."}
    for x, name in enumerate(names):
        s = summaries[name]
        colour = _COLOURS.get(name, _ABLATION_COLOUR)
        if not s.overall:
            ax.text(x, 0.01, "failed", ha="center", va="bottom", color="red", fontweight="bold", rotation=90)
            continue
        greedy_top = _bars(ax, x + width / 2, s.overall, colour, width, **greedy_style)
        ax.text(x + width / 2, greedy_top + 0.01, f"{statistics.fmean(s.overall):.3f}", ha="center", va="bottom",
                fontsize=7, color="#444444")
        if s.sampled:
            peak = _bars(ax, x - width / 2, s.sampled, colour, width)
            label = f"{statistics.fmean(s.sampled):.3f}"
        else:
            peak, label = 0.0, "no\nsampled"
        if s.failed:
            label += f"\n{len(s.overall)}/{len(s.overall) + len(s.failed)} runs"
        ax.text(x - width / 2, peak + 0.01, label, ha="center", va="bottom", fontsize=8, fontweight="bold")
        top = max(top, peak, greedy_top)
    base = summaries.get(BASELINE)
    if base is not None and base.sampled:
        ax.axhline(statistics.fmean(base.sampled), color=_COLOURS[BASELINE], linestyle="--", linewidth=1, zorder=1)
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, min(1.05, top * 1.45 + 0.03))  # headroom for the legend rows above the bars
    ax.set_ylabel("held-out accuracy (NDCG@1)\nmean ± sample std over seeds; dots = seeds")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    settings, machine = doc["settings"], doc["machine"]
    cfg = sampled_settings(doc["results"])
    sampling = (f"sampled: n = {_setting(cfg['samples'])}, temperature {_setting(cfg['temperature'])}"
                if cfg["samples"] else "no sampled evaluation")
    ax.set_title(
        f"ReRec ablation, embedded world: {settings['steps']} RL steps, {len(settings['seeds'])} seed(s); {sampling}\n"
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}", fontsize=10,
    )
    ax.legend(handles=[
        Patch(facecolor="white", edgecolor="black", label="solid: sampled accuracy (n per query)"),
        Patch(facecolor="white", edgecolor="black", label="light, dotted: greedy accuracy", **greedy_style),
        Patch(facecolor=_COLOURS[WARM_START], edgecolor="black", label="warm start (before RL)"),
        Patch(facecolor=_COLOURS[BASELINE], edgecolor="black", label="GRPO (dashed: its sampled mean)"),
        Patch(facecolor=_COLOURS["rloo"], edgecolor="black", label="other baselines"),
        Patch(facecolor=_COLOURS["rerec"], edgecolor="black", label="ReRec"),
        Patch(facecolor=_ABLATION_COLOUR, edgecolor="black", label="ReRec ablations"),
    ], fontsize=7, loc="upper center", ncol=3, framealpha=0.9)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png.tmp") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


# ================================================================================= output
def machine_info() -> dict[str, Any]:
    """CPU model, core counts and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("torch", "lightning", "transformers"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu, "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        **versions, "python": platform.python_version(), "platform": platform.platform(),
    }


def document(machine: dict[str, Any], command: str, settings: dict[str, Any],
             results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The ``ablation.json`` document: warm start first, then the variants in settings order."""
    order = [v for v in settings["variants"] if v in results]
    warm, check = warm_start_results(results, order)
    ordered = {WARM_START: warm, **{v: sorted(results[v], key=lambda r: r["seed"]) for v in order}}
    return {"machine": machine, "command": command, "settings": settings, "results": ordered,
            "warm_start_check": check}


def write_outputs(out: Path, doc: dict[str, Any], chart: bool = True) -> None:
    """``ablation.json`` and ``ablation.md`` (and ``ablation.png`` when ``chart``) in ``out``."""
    atomic_write_text(out / "ablation.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "ablation.md", render_markdown(doc))
    if chart:
        plot(doc, out / "ablation.png")


# ================================================================================= main
def default_steps() -> int:
    """RL steps of the full study (as ``tiny.yaml``: 24 runs in about 40 minutes with 2 jobs)."""
    return STUDY_STEPS


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__[__doc__.index("What it reports"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"1 seed ({QUICK_SEEDS[0]}) and {QUICK_STEPS} RL steps unless --seeds/--steps say otherwise")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"), help="output folder (default runs/ablation)")
    p.add_argument("--seeds", type=int, nargs="+", help=f"seed_everything values (default {list(DEFAULT_SEEDS)})")
    p.add_argument("--steps", type=int, help="RL steps of every run (default: trainer.max_steps of configs/tiny.yaml)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(STUDY_VARIANTS), metavar="VARIANT",
                   help=f"variants to run (default: {' '.join(STUDY_VARIANTS)}; also: "
                        f"{' '.join(v for v in VARIANTS if v not in STUDY_VARIANTS)})")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default 2)")
    p.add_argument("--extra-args", default="", help="CLI overrides added to every run, one shell-quoted string; write "
                        '--extra-args="--key=value" when it starts with -- and has no space')
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if len(set(args.variants)) != len(args.variants):
        p.error("--variants lists a variant twice")
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        p.error("--seeds lists a seed twice")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the study; returns the ``ablation.json`` document."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    seeds = args.seeds or list(QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
    steps = args.steps or (QUICK_STEPS if args.quick else default_steps())
    extra = shlex.split(args.extra_args)
    out = args.out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "quick": args.quick, "steps": steps, "seeds": seeds, "variants": args.variants, "jobs": args.jobs,
        "extra_args": args.extra_args, "base_config": BASE_CONFIG,
        "variant_args": {v: {"configs": list(VARIANTS[v].configs), "overrides": list(VARIANTS[v].overrides)}
                         for v in args.variants},
    }
    command = "python " + shlex.join(["benchmarks/ablation.py", *argv])
    machine = machine_info()

    # Warm-up: world + warm start computed once, alone (max_steps=0 stops before any RL or evaluation).
    study_start = time.perf_counter()
    warm_dir = out / "runs" / "_warmup"
    print(f"warm-up (world + warm start) in {warm_dir} ...", flush=True)
    rc, seconds, log_path = run_fit(fit_args(VARIANTS[BASELINE], seeds[0], 0, warm_dir, extra), warm_dir)
    settings["warmup"] = {"exit_code": rc, "time_s": round(seconds, 1), "log": str(log_path)}
    if rc != 0:
        raise SystemExit(f"warm-up failed (exit code {rc}), see {log_path}: {_log_tail(log_path)}")

    jobs = [(v, s) for s in seeds for v in args.variants]  # seed-major: an interrupted study has whole seeds
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}

    def one(variant: str, seed: int) -> dict[str, Any]:
        run_dir = out / "runs" / variant / f"seed{seed}"
        rc, seconds, log_path = run_fit(fit_args(VARIANTS[variant], seed, steps, run_dir, extra), run_dir)
        return run_record(seed, run_dir, rc, seconds, log_path)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(one, v, s): (v, s) for v, s in jobs}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                variant, seed = futures[future]
                try:
                    record = future.result()
                except Exception as err:  # the runner's own failure (e.g. disk): keep the run as failed
                    record = {**blank_record(seed), "error": f"runner: {type(err).__name__}: {err}"}
                results[variant].append(record)  # only this thread touches results and the files
                write_outputs(out, document(machine, command, settings, results), chart=False)
                if record.get("error"):
                    print(f"[{done}/{len(jobs)}] {variant} seed {seed}: FAILED: {record['error']}", flush=True)
                else:
                    before = record["val_before"]
                    print(f"[{done}/{len(jobs)}] {variant} seed {seed}: NDCG@1 sampled "
                          f"{_accuracy(record['sampled_accuracy'])}, greedy {record['accuracy']:.3f} (before RL: "
                          f"{_accuracy(before['sampled_accuracy'])}, {before['accuracy']:.3f}) in "
                          f"{record['process_time_s']:.0f} s", flush=True)
        except KeyboardInterrupt:  # Ctrl-C also stops the running fits; start no new one
            for future in futures:
                future.cancel()
            raise
    settings["total_time_s"] = round(time.perf_counter() - study_start, 1)
    doc = document(machine, command, settings, results)
    write_outputs(out, doc)
    for mismatch in doc["warm_start_check"]["mismatches"]:
        print(f"WARNING: warm start mismatch: {mismatch}", file=sys.stderr, flush=True)
    if not doc["warm_start_check"]["same_across_seeds"]:
        print("WARNING: the warm start differs between seeds", file=sys.stderr, flush=True)
    summaries = summarise(doc["results"])
    print(f"sampled accuracy:\n{sampled_table(summaries)}\ngreedy accuracy:\n{markdown_table(summaries)}", flush=True)
    print(f"written: {out / 'ablation.json'}, {out / 'ablation.md'}, {out / 'ablation.png'}", flush=True)
    return doc


def any_failed(doc: dict[str, Any]) -> bool:
    """Whether any run of the study failed."""
    return any(rec.get("error") for records in doc["results"].values() for rec in records)


if __name__ == "__main__":
    sys.exit(1 if any_failed(main()) else 0)
