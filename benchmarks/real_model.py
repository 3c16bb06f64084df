"""Does RL help a real pretrained model? SmolLM2-135M-Instruct on the real RecBench+ demographics queries:
zero-shot → format warm start → RL, ReRec against plain GRPO at the same step budget.

Three fits of ``configs/smollm2-135m-recbench-movie.yaml``, each in its own process, one after the other:

- ``zero_shot``: no warm start, one RL step; its ``val_before`` is the model as imported.
- ``rerec``: the recipe (format warm start, QAS reward, RAAE, curriculum); ``val_before`` is the warm
  start, ``val_after`` the end of RL.
- ``grpo``: the same warm start (same seed, same data), then plain GRPO: format + NDCG reward,
  sequence-level group-normalised advantages, no curriculum.

Reported per stage, on the validation queries: sampled accuracy (mean NDCG@1 of ``--samples`` sampled
answers per query), pass@n, greedy accuracy, parse rate and the share in the asked ``\\boxed{}`` format.
One seed: an anecdote, not a claim; the held-out set is small (``--eval-queries``).

    python -m rerec.gguf_import smollm2-135m-instruct
    python benchmarks/real_model.py --release data/recbench --out docs/real-model-rl.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from ablation import machine_info  # noqa: E402

CONFIG = "configs/smollm2-135m-recbench-movie.yaml"
GRPO_ARGS = [
    '--model.init_args.reward_funcs=[{"class_path": "rerec.rl.reward_components.FormatReward", "init_args": '
    '{"weight": 0.1}}, {"class_path": "rerec.rl.reward_components.NDCGReward", "init_args": {"weight": 1.0}}]',
    '--model.init_args.advantage={"class_path": "rerec.rl.advantages.GRPOAdvantage", "init_args": {"scale_rewards": true}}',
    "--data.init_args.curriculum.mode=static",
]


def arm_args(name: str, args: argparse.Namespace, run_dir: Path) -> list[str]:
    """CLI arguments of one arm."""
    common = [
        "fit", "--config", CONFIG, f"--data.init_args.root={args.release}",
        f"--model.init_args.model.name_or_path={args.model}", f"--seed_everything={args.seed}",
        f"--data.init_args.max_eval_queries={args.eval_queries}", f"--model.init_args.eval_samples={args.samples}",
        f"--model.init_args.eval_max_new_tokens={args.max_new_tokens}",
        f"--model.init_args.generation.max_completion_length={args.max_new_tokens}",
        f"--model.init_args.warm_start.steps={args.warm_start_steps}",
        f"--model.init_args.warm_start.cache_dir={args.work_dir / 'warm_start'}",
        f"--trainer.default_root_dir={run_dir}", f"--trainer.logger.init_args.save_dir={run_dir}",
        "--trainer.callbacks=[]",
    ]
    if name == "zero_shot":
        return common + ["--model.init_args.warm_start.steps=0", "--trainer.max_steps=1"]
    steps = [f"--trainer.max_steps={args.steps}"]
    return common + steps + (GRPO_ARGS if name == "grpo" else [])


def stage(val: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one held-out evaluation of ``summary.json``."""
    sampled = val.get("sampled") or {}
    return {"sampled_accuracy": sampled.get("accuracy"), "pass_at_n": sampled.get("pass_at_n"),
            "greedy_accuracy": val.get("accuracy"), "parse_rate": sampled.get("parse_rate"),
            "format_rate": sampled.get("format_rate"), "count": val.get("count"), "samples": sampled.get("samples")}


def run_arm(name: str, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = args.work_dir / name
    log_path = args.work_dir / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", "REREC_PROGRESS": "0"}
    start = time.perf_counter()
    with log_path.open("w") as log:
        rc = subprocess.run([sys.executable, "-m", "rerec", *arm_args(name, args, run_dir)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - start
    summaries = sorted(run_dir.rglob("summary.json"), key=lambda p: p.stat().st_mtime)
    if rc != 0 or not summaries:
        tail = log_path.read_text(errors="replace").splitlines()[-8:]
        return {"arm": name, "error": f"exit code {rc}", "log_tail": tail, "process_time_s": round(seconds, 1)}
    summary = json.loads(summaries[-1].read_text())
    metrics = summary.get("train_metrics_mean", {})
    return {
        "arm": name, "process_time_s": round(seconds, 1), "steps": summary.get("steps"),
        "before": stage(summary["val_before"]), "after": stage(summary["val_after"]),
        "warm_start": summary.get("warm_start"), "learning_signal": summary.get("learning_signal"),
        "step_time_s": summary.get("step_time_s"), "peak_memory": summary.get("peak_memory"),
        "train": {k: metrics.get(k) for k in ("reward", "frac_reward_zero_std", "completions/parse_rate",
                                              "completions/format_rate", "kl")},
        "summary": str(summaries[-1]),
    }


def markdown(doc: dict[str, Any]) -> str:
    rows = ["| stage | sampled accuracy | pass@n | greedy | parse rate | boxed rate |", "|---|---:|---:|---:|---:|---:|"]

    def row(label: str, s: dict[str, Any]) -> str:
        cell = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        return (f"| {label} | {cell(s['sampled_accuracy'])} | {cell(s['pass_at_n'])} | {cell(s['greedy_accuracy'])} | "
                f"{cell(s['parse_rate'])} | {cell(s['format_rate'])} |")

    arms = {a["arm"]: a for a in doc["arms"]}
    if "before" in arms.get("zero_shot", {}):
        rows.append(row("zero-shot", arms["zero_shot"]["before"]))
    if "before" in arms.get("rerec", {}):
        rows.append(row("format warm start", arms["rerec"]["before"]))
    for name, label in (("rerec", "after RL: ReRec"), ("grpo", "after RL: GRPO")):
        if "after" in arms.get(name, {}):
            rows.append(row(f"{label} ({arms[name]['steps']} steps)", arms[name]["after"]))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", required=True, help="RecBench+ folder holding movie/")
    parser.add_argument("--model", default=".cache/rerec/models/SmolLM2-135M-Instruct")
    parser.add_argument("--arms", default="zero_shot,rerec,grpo")
    parser.add_argument("--steps", type=int, default=60, help="RL steps of each RL arm")
    parser.add_argument("--warm-start-steps", type=int, default=30)
    parser.add_argument("--eval-queries", type=int, default=None, help="cap on validation queries (default: all)")
    parser.add_argument("--samples", type=int, default=8, help="sampled answers per held-out query")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path(".cache/rerec/bench-real-model"))
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here (and the table beside it, .md)")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"benchmark": "real model: zero-shot -> warm start -> RL (ReRec vs GRPO)",
                           "machine": machine_info(), "command": " ".join(sys.argv),
                           "settings": {k: str(v) for k, v in vars(args).items()}, "arms": []}
    for name in args.arms.split(","):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        doc["arms"].append(run_arm(name, args))
        if args.out:  # after every arm, so a cut-off run still reports
            args.out.write_text(json.dumps(doc, indent=2) + "\n")
            args.out.with_suffix(".md").write_text(markdown(doc) + "\n")
    print(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()
