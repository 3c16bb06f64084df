"""Peak memory and time of one warm-start step of a pretrained model: a batch of ``--batch`` rows of
``--prompt-tokens`` prompt + ``--completion-tokens`` completion tokens, LoRA r=16 on every linear layer,
float32 on the CPU. Each setting runs in its own process (peak RSS only grows):

- ``hf_loss``: one forward with the model's own loss (vocabulary-sized logits at every position);
- ``micro_N``: :func:`rerec.rl.warm_start.completion_token_loss` with ``micro_batch_size`` N (the LM head
  on completion positions only, gradient accumulated over micro-batches).

    python -m rerec.gguf_import smollm2-135m-instruct
    python benchmarks/warm_start_memory.py --model .cache/rerec/models/SmolLM2-135M-Instruct

Prints one JSON object (``results``: setting, peak RSS GiB, seconds of the step).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def worker(args: argparse.Namespace) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rerec.rl.peak_memory import peak_memory
    from rerec.rl.warm_start import completion_token_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    model.train()
    length = args.prompt_tokens + args.completion_tokens
    ids = torch.randint(100, model.config.vocab_size - 100, (args.batch, length))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, : args.prompt_tokens] = -100
    loaded = peak_memory()["cpu_rss_gb"]
    start = time.perf_counter()
    if args.setting == "hf_loss":
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    else:
        completion_token_loss(model, ids, mask, labels, int(args.setting.removeprefix("micro_")))
    seconds = time.perf_counter() - start
    print("RESULT " + json.dumps({"setting": args.setting, "peak_rss_gb": peak_memory()["cpu_rss_gb"],
                                  "rss_after_load_gb": loaded, "step_s": seconds}))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=".cache/rerec/models/SmolLM2-135M-Instruct")
    parser.add_argument("--settings", default="hf_loss,micro_8,micro_2,micro_1")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--completion-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--setting", default=None, help=argparse.SUPPRESS)  # the worker's own
    args = parser.parse_args(argv)
    if args.setting:
        worker(args)
        return {}
    from ablation import machine_info

    results = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    for setting in args.settings.split(","):
        cmd = [sys.executable, __file__, "--setting", setting, "--model", args.model, "--batch", str(args.batch),
               "--prompt-tokens", str(args.prompt_tokens), "--completion-tokens", str(args.completion_tokens),
               "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        results.append(json.loads(line[-1].removeprefix("RESULT ")) if line else
                       {"setting": setting, "error": done.stderr[-1500:]})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    doc = {"benchmark": "warm-start step memory", "machine": machine_info(),
           "settings": {k: v for k, v in vars(args).items() if k != "setting"}, "results": results}
    print(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()
