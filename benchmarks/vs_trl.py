"""ReRec's RL step against TRL's ``GRPOTrainer``, side by side, on the same saved model and tokenizer,
the same rendered prompts (token ids checked equal), B, G, completion length (forced equal: EOS is
blocked before the budget on both sides), temperature, μ, β, learning rate and precision (float32).

Every configuration runs ``--repeats`` times per trainer, alternating the two, each run in its own
process with pinned threads. Per-step times count from step 3 (the first two warm up allocators and
caches). Reported per trainer: the median over runs of each run's median step time, its generate /
score / update split, completion tokens per second of the whole step, and the process's peak RSS; with
the range over runs and the ReRec / TRL ratios.

    pip install -e ".[bench]"                 # TRL, for this benchmark only
    python benchmarks/vs_trl.py --quick       # tiny model: full β=0, full β>0 (reference copy), LoRA β>0
    python benchmarks/vs_trl.py               # also the ~10M-parameter model
    python benchmarks/vs_trl.py --real-model .cache/rerec/models/SmolLM2-135M-Instruct --release data/recbench
        # a real pretrained chat model on the real-model recipe's prompts: ReRec's old defaults, the recipe
    python benchmarks/vs_trl.py --sweep --movies data/recbench/movie/movies.dat
        # Qwen2.5's vocabulary (151,936), 20-candidate prompts, completions of 64/128/256/512 tokens

``--json`` prints one object whose ``results`` list has one entry per configuration (``name``,
``step_time_ratio``, ``peak_memory_ratio``, ...); otherwise a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_assets import (  # noqa: E402
    ModelSpec, PromptSpec, build_model_dir, load_titles, real_model_dir, real_prompts, render_prompts,
)
from _bench_common import RunSettings  # noqa: E402

QWEN25_VOCAB = 151_936
TINY = ModelSpec(hidden_size=64, num_layers=2, intermediate_size=128)
M10 = ModelSpec(hidden_size=256, num_layers=8, num_heads=8, num_kv_heads=2, intermediate_size=1024, tokenizer_vocab=8192)
SWEEP_MODEL = ModelSpec(hidden_size=64, num_layers=2, intermediate_size=128, vocab_size=QWEN25_VOCAB,
                        tokenizer_vocab=8192)
TRAINERS = ("rerec", "trl")
FIRST_TIMED_STEP = 3


@dataclass
class BenchConfig:
    """One comparison point."""

    name: str
    model: ModelSpec
    prompts: PromptSpec = field(default_factory=lambda: PromptSpec(num_prompts=8, num_candidates=5, history=3))
    num_generations: int = 5
    max_completion_length: int = 48
    micro_batch_size: int = 40
    mode: str = "full"
    beta: float = 0.0
    num_iterations: int = 1
    learning_rate: float = 1e-5
    temperature: float = 1.0
    logits_chunk: int | None = None
    gradient_checkpointing: bool = False
    packed_groups: bool = False
    lora_dropout: float = 0.05
    real_model: str | None = None   # a pretrained model folder (``--real-model``) instead of ``model``
    release: str | None = None      # its prompts: the recipe's queries of this RecBench+ release


def quick_configs() -> list[BenchConfig]:
    return [
        BenchConfig("tiny full β=0", TINY),
        BenchConfig("tiny full β=0.04 (reference copy)", TINY, beta=0.04),
        BenchConfig("tiny LoRA β=0.04", TINY, mode="lora", beta=0.04),
    ]


def full_configs() -> list[BenchConfig]:
    return [*quick_configs(),
            BenchConfig("10M full β=0", M10),
            BenchConfig("10M full β=0.04 (reference copy)", M10, beta=0.04),
            BenchConfig("10M LoRA β=0.04", M10, mode="lora", beta=0.04),
            BenchConfig("10M full β=0.04 μ=2", M10, beta=0.04, num_iterations=2)]


def sweep_configs(lengths: list[int], prompts: int, generations: int) -> list[BenchConfig]:
    """Qwen2.5's vocabulary, RecBench+-length prompts (20 candidates, 10 films of history), LoRA with a
    KL term (the single-GPU QLoRA recipe's shape on a CPU-sized body); one group per micro-batch."""
    spec = PromptSpec(num_prompts=prompts, num_candidates=20, history=10)
    return [BenchConfig(f"V=151,936, 20 candidates, T={t}", SWEEP_MODEL, spec, generations, t, generations,
                        mode="lora", beta=0.04) for t in lengths]


def real_configs(model_dir: str, release: str) -> list[BenchConfig]:
    """A pretrained chat model on the real-model recipe's prompts (B=4 × G=4, 96-token completions, LoRA,
    β=0.02): first as ReRec's defaults had it (gradient checkpointing on, all logits at once, one
    micro-batch), then as the recipe sets it (checkpointing off, 32-column LM-head chunks, micro-batches of
    8, no LoRA dropout), then the recipe with checkpointing on, each group packed into one sequence. Each
    row runs TRL with the same settings."""
    name = Path(model_dir).name
    prompts = PromptSpec(num_prompts=4)
    common = dict(prompts=prompts, num_generations=4, max_completion_length=96, mode="lora", beta=0.02,
                  learning_rate=1e-4, real_model=model_dir, release=release)
    return [
        BenchConfig(f"{name}, defaults (checkpointing on, micro 16, no chunking)", TINY, micro_batch_size=16,
                    gradient_checkpointing=True, **common),
        BenchConfig(f"{name}, recipe (checkpointing off, micro 8, chunk 32)", TINY, micro_batch_size=8,
                    logits_chunk=32, lora_dropout=0.0, **common),
        BenchConfig(f"{name}, recipe with checkpointing (packed groups, micro 16, chunk 32)", TINY,
                    micro_batch_size=16, logits_chunk=32, lora_dropout=0.0, gradient_checkpointing=True,
                    packed_groups=True, **common),
    ]


def run_worker(trainer: str, settings: RunSettings, work: Path) -> dict[str, Any]:
    """Run one trainer in a fresh process; its measured record."""
    path = work / f"settings-{trainer}.json"
    path.write_text(json.dumps(asdict(settings)))
    env = {**os.environ, "OMP_NUM_THREADS": str(settings.threads), "MKL_NUM_THREADS": str(settings.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, str(HERE / f"_bench_{trainer}.py"), str(path)], env=env,
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{trainer} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / range over runs of each run's median from step ``FIRST_TIMED_STEP`` on."""
    first = FIRST_TIMED_STEP - 1
    per_run: dict[str, list[float]] = {k: [] for k in ("step_s", "generate_s", "score_s", "update_s", "tokens_per_s")}
    for run in runs:
        for key in ("step_s", "generate_s", "score_s", "update_s"):
            per_run[key].append(statistics.median(run[key][first:]))
        per_run["tokens_per_s"].append(statistics.median(
            tok / s for tok, s in zip(run["completion_tokens"][first:], run["step_s"][first:])))
    out = {k: _spread(v) for k, v in per_run.items()}
    out["peak_rss_gb"] = _spread([run["peak_rss_gb"] for run in runs])
    out["completion_tokens_per_step"] = runs[0]["completion_tokens"][first]
    out["versions"] = runs[0]["versions"]
    return out


def compare(config: BenchConfig, titles: list[tuple[str, str]], work: Path, repeats: int, steps: int,
            threads: int, log: Any) -> dict[str, Any]:
    """Both trainers on ``config``, ``repeats`` alternating runs each."""
    if config.real_model:
        model_dir = real_model_dir(config.real_model, work / _slug(config), config.max_completion_length)
        prompts = real_prompts(config.release, model_dir, config.prompts.num_prompts)
    else:
        model_dir = build_model_dir(work / _slug(config), config.model, titles, config.max_completion_length)
        prompts = render_prompts(titles, config.prompts)
    settings = RunSettings(
        model_dir=str(model_dir), prompts=prompts, gradient_checkpointing=config.gradient_checkpointing,
        packed_groups=config.packed_groups,
        lora_dropout=config.lora_dropout,
        num_generations=config.num_generations, max_completion_length=config.max_completion_length,
        micro_batch_size=config.micro_batch_size, temperature=config.temperature,
        num_iterations=config.num_iterations, beta=config.beta, learning_rate=config.learning_rate,
        mode=config.mode, steps=steps, threads=threads, logits_chunk=config.logits_chunk,
    )
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TRAINERS}
    for rep in range(repeats):
        for trainer in (TRAINERS if rep % 2 == 0 else TRAINERS[::-1]):
            t0 = time.perf_counter()
            runs[trainer].append(run_worker(trainer, settings, work))
            log(f"  {config.name}: {trainer} run {rep + 1}/{repeats} "
                f"({time.perf_counter() - t0:.0f} s, step {statistics.median(runs[trainer][-1]['step_s'][FIRST_TIMED_STEP - 1:]):.3f} s)")
    shas = {r["prompt_ids_sha"] for t in TRAINERS for r in runs[t]}
    if len(shas) != 1:
        raise AssertionError(f"{config.name}: the trainers saw different prompt token ids")
    tokens = {tuple(r["completion_tokens"]) for t in TRAINERS for r in runs[t]}
    if len(tokens) != 1:
        raise AssertionError(f"{config.name}: completion lengths differ between runs: {tokens}")
    rerec, trl = summarize(runs["rerec"]), summarize(runs["trl"])
    ratio = lambda key: rerec[key]["median"] / trl[key]["median"]  # noqa: E731
    prompt_tokens = _prompt_tokens(model_dir, settings.prompts)
    return {
        "name": config.name,
        "step_time_ratio": ratio("step_s"),
        "peak_memory_ratio": ratio("peak_rss_gb"),
        "tokens_per_s_ratio": ratio("tokens_per_s"),
        "generate_ratio": ratio("generate_s"), "score_ratio": ratio("score_s"), "update_ratio": ratio("update_s"),
        "settings": {"model": asdict(config.model), "parameters": _parameters(model_dir), "mode": config.mode,
                     "beta": config.beta, "num_iterations": config.num_iterations, "B": config.prompts.num_prompts,
                     "G": config.num_generations, "T": config.max_completion_length,
                     "micro_batch_size": config.micro_batch_size, "candidates": config.prompts.num_candidates,
                     "rerec_logits_chunk": config.logits_chunk, "gradient_checkpointing": config.gradient_checkpointing,
                     "packed_groups": config.packed_groups,
                     "lora_dropout": config.lora_dropout, "real_model": config.real_model,
                     "prompt_tokens": {"min": min(prompt_tokens), "max": max(prompt_tokens)},
                     "repeats": repeats, "steps": steps, "timed_from_step": FIRST_TIMED_STEP, "threads": threads},
        "rerec": rerec, "trl": trl,
    }


def _slug(config: BenchConfig) -> str:
    if config.real_model:
        return f"{Path(config.real_model).name}-t{config.max_completion_length}"
    m = config.model
    return f"qwen2-h{m.hidden_size}-l{m.num_layers}-v{m.vocab_size or m.tokenizer_vocab}-t{config.max_completion_length}"


def _prompt_tokens(model_dir: Path, prompts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [len(tok(p)["input_ids"]) for p in prompts]


def _parameters(model_dir: Path) -> int:
    """Parameters of the saved model (tied embeddings counted once)."""
    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                n = 1
                for d in f.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def markdown(report: dict[str, Any]) -> str:
    """The comparison as a Markdown table (medians; ratios are ReRec / TRL)."""
    rows = ["| configuration | ReRec step (gen / score / update) s | TRL step (gen / score / update) s | step ratio | "
            "tokens/s ReRec / TRL | peak RSS GB ReRec / TRL | memory ratio |",
            "|---|---|---|---:|---|---|---:|"]
    for r in report["results"]:
        a, b = r["rerec"], r["trl"]
        split = lambda x: (f"{x['step_s']['median']:.3f} ({x['generate_s']['median']:.3f} / "  # noqa: E731
                           f"{x['score_s']['median']:.3f} / {x['update_s']['median']:.3f})")
        rows.append(
            f"| {r['name']} | {split(a)} | {split(b)} | {r['step_time_ratio']:.2f} "
            f"({a['step_s']['min'] / b['step_s']['max']:.2f}–{a['step_s']['max'] / b['step_s']['min']:.2f}) | "
            f"{a['tokens_per_s']['median']:.0f} / {b['tokens_per_s']['median']:.0f} | "
            f"{a['peak_rss_gb']['median']:.2f} / {b['peak_rss_gb']['median']:.2f} | {r['peak_memory_ratio']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny model only (a few minutes on 2 CPU cores)")
    parser.add_argument("--sweep", action="store_true", help="the real-shape sweep instead of the model grid")
    parser.add_argument("--lengths", default="64,128,256,512", help="completion lengths of the sweep")
    parser.add_argument("--sweep-prompts", type=int, default=2, help="B of the sweep")
    parser.add_argument("--sweep-generations", type=int, default=4, help="G of the sweep")
    parser.add_argument("--real-model", default=None,
                        help="a pretrained model folder (python -m rerec.gguf_import smollm2-135m-instruct): "
                             "its two rows instead of the model grid; needs --release")
    parser.add_argument("--release", default=None, help="the RecBench+ release whose prompts --real-model takes")
    parser.add_argument("--movies", default=None, help="a MovieLens movies.dat for realistic titles")
    parser.add_argument("--logits-chunk", type=int, default=None,
                        help="ReRec's logits_chunk_size (completion columns per LM-head call)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 5; sweep 4)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None,
                        help="run only the configuration of this name, or else those whose name contains it")
    parser.add_argument("--work-dir", default=".cache/rerec/bench-vs-trl")
    parser.add_argument("--json", action="store_true", help="print the JSON object only")
    parser.add_argument("--out", default=None, help="also write the JSON here (and the table next to it, .md)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("trl") is None:
        raise SystemExit("TRL is not installed: pip install -e \".[bench]\"")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.real_model:
        if not args.release:
            parser.error("--real-model needs --release (a RecBench+ folder holding movie/)")
        configs = real_configs(args.real_model, args.release)
    elif args.sweep:
        configs = sweep_configs([int(x) for x in args.lengths.split(",")], args.sweep_prompts, args.sweep_generations)
    else:
        configs = quick_configs() if args.quick else full_configs()
    if args.logits_chunk:
        configs = [replace(c, name=f"{c.name}, ReRec logits chunk {args.logits_chunk}", logits_chunk=args.logits_chunk)
                   for c in configs]
    if args.only:  # an exact name, else every name containing it
        configs = [c for c in configs if c.name == args.only] or [c for c in configs if args.only in c.name]
    steps = args.steps or (4 if args.sweep else 5)
    titles = load_titles(args.movies)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = [compare(c, titles, work, args.repeats, steps, args.threads, log) for c in configs]
    report = {
        "benchmark": "ReRec RL step vs TRL GRPOTrainer" + (" (sweep)" if args.sweep else ""),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "titles": "movies.dat" if args.movies and Path(args.movies).exists() else "built-in list",
        "wall_time_s": time.perf_counter() - t0,
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
        Path(args.out).with_suffix(".md").write_text(markdown(report) + "\n")
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return report


if __name__ == "__main__":
    main()
