"""What the warm-started policy does on held-out queries, before any RL: does it read the candidates?

    python benchmarks/policy_probe.py [--config configs/tiny.yaml] [--samples 8] [--train-queries 150]
        [extra CLI overrides, e.g. --model.init_args.warm_start.steps=500]

Builds the model and data exactly as ``python -m rerec fit --config ...`` would (world, tokenizer, cached
warm start), without training, and prints one JSON object with the machine and, for the validation split:

- ``greedy``: accuracy overall / per type and ``off_candidate``, the share of answers that name none of the
  prompt's candidates (a title recalled from memory rather than read from the list);
- ``sampled``: mean NDCG@1 of ``--samples`` answers per query sampled as the rollouts are, and
  pass@samples (the measurement `eval_samples` adds to a fit's summary, on its own seeded random stream);
- ``teacher_forced``: with the gold trace up to the chosen title, the probability mass the policy puts on
  the prompt's candidate titles and how often the gold title is the argmax (tiny model with entity tokens,
  where every title is one token);
- ``warm_start_queries`` (with ``--train-queries N``): greedy accuracy on N of the warm start's own training
  queries (memorisation check) and on N of the RL training queries it has not seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import machine_info  # noqa: E402

from rerec.cli import ReRecCLI  # noqa: E402
from rerec.data.prompts import reasoning_trace  # noqa: E402
from rerec.rl.policy_builder import encode_prompt  # noqa: E402


def build(config: str, overrides: list[str]):
    cli = ReRecCLI(model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
                   run=False, args=["--config", config, *overrides])
    dm, model = cli.datamodule, cli.model
    dm.setup("fit")
    model.attach_data(dm.load())
    model.configure_model()
    model.policy.eval()
    return model, dm.data


def greedy(model, tasks) -> dict:
    result = model.evaluator.greedy(tasks)
    return {
        "accuracy": result["overall"]["accuracy"], "off_candidate": result["overall"]["off_candidate"],
        "by_type": {t: {"accuracy": m["accuracy"], "off_candidate": m["off_candidate"], "count": m["count"]}
                    for t, m in result["by_type"].items()},
    }


@torch.no_grad()
def sampled(model, tasks, samples: int) -> dict:
    res = model.evaluator.sampled(tasks, samples)
    key = f"pass@{samples}"
    return {
        "accuracy": res["accuracy"], key: res["pass_at_n"], "count": res["count"],
        "by_type": {t: {"accuracy": a, key: res["pass_at_n_by_type"][t], "count": res["count_by_type"][t]}
                    for t, a in res["accuracy_by_type"].items()},
    }


@torch.no_grad()
def teacher_forced(model, data, tasks) -> dict:
    tok = model.tokenizer
    mass, top = defaultdict(list), defaultdict(list)
    for task in tasks:
        title = data.items[task.target_id].title
        trace = reasoning_trace(task, data.items, data.attributes)
        prefix = trace[: trace.rindex(" " + title, 0, trace.rindex("\\boxed"))]
        ids = model.prompt_ids[task.query_id] + tok(prefix, add_special_tokens=False).input_ids
        probs = model.policy(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1].softmax(-1)
        first = [tok(" " + data.items[c].title, add_special_tokens=False).input_ids for c in task.candidate_ids]
        if any(len(t) != 1 for t in first):
            raise SystemExit("teacher-forced probe needs one token per title (tiny model with entity tokens)")
        gold = tok(" " + title, add_special_tokens=False).input_ids[0]
        mass[task.query_type].append(float(probs[[t[0] for t in first]].sum()))
        top[task.query_type].append(int(probs.argmax()) == gold)
    flat_mass = [v for vs in mass.values() for v in vs]
    flat_top = [v for vs in top.values() for v in vs]
    return {
        "candidate_mass": sum(flat_mass) / len(flat_mass), "gold_is_argmax": sum(flat_top) / len(flat_top),
        "by_type": {t: {"candidate_mass": sum(mass[t]) / len(mass[t]), "gold_is_argmax": sum(top[t]) / len(top[t])}
                    for t in mass},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--samples", type=int, default=8, help="rollouts per query for sampled accuracy / pass@k")
    parser.add_argument("--train-queries", type=int, default=0,
                        help="also evaluate greedily on this many warm-start and RL training queries")
    args, overrides = parser.parse_known_args(argv)
    command = " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    start = time.perf_counter()
    torch.manual_seed(0)
    saved_argv, sys.argv = sys.argv, sys.argv[:1]  # the overrides reach LightningCLI through ``args`` only
    try:
        model, data = build(args.config, overrides)
    finally:
        sys.argv = saved_argv
    val = data.tasks["val"]
    out = {
        "machine": machine_info(), "command": command,
        "config": args.config, "overrides": overrides, "warm_start": model.summary.get("warm_start"),
        "val_queries": len(val), "greedy": greedy(model, val), "sampled": sampled(model, val, args.samples),
        "teacher_forced": teacher_forced(model, data, val),
    }
    if args.train_queries:
        seen = [t for t in data.warm_start_tasks if t.candidate_ids]
        random.Random(0).shuffle(seen)
        seen = seen[: args.train_queries]
        unseen = list(data.tasks["train"])
        random.Random(0).shuffle(unseen)  # the split is ordered by query type
        for task in seen:
            model.prompt_ids.setdefault(task.query_id, encode_prompt(model.tokenizer, task, data))
        out["warm_start_queries"] = {"seen_by_warm_start": greedy(model, seen),
                                     "rl_training": greedy(model, unseen[: args.train_queries])}
    out["time_s"] = time.perf_counter() - start
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
