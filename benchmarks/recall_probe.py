"""When does the tiny architecture learn an in-context lookup? The warm start's ``recall`` task, alone.

    python benchmarks/recall_probe.py [--steps 900] [--lr 1e-3] [--pairs 16] [--batch-size 32]
        [--vocab-size 1790] [--hidden-size 128] [--num-layers 4] [--seed 0]

Trains a freshly initialised tiny Qwen2 (the policy's own architecture, ``rerec.rl.tiny_model``) on random key/value pairs shown again in
a shuffled order (``rerec.rl.warm_start.recall_batch``: only a content-based lookup predicts the second
values) and prints one JSON object: the machine, the settings, the loss every 50 steps, the first logged
step whose loss is below 1.0 (``formed_at``; ``null`` if it never is) and seconds per step. Chance is
ln(vocabulary); an induction head drives the loss towards 0 after a plateau near chance. This is the
measurement behind ``warm_start.copy_lr`` and ``copy_steps`` (results: docs/tiny-world.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import machine_info  # noqa: E402

from rerec.rl.tiny_model import TinyModelConfig, init_tiny_model, tiny_qwen2_config  # noqa: E402
from rerec.rl.warm_start import recall_batch  # noqa: E402

FIRST_ID = 3  # skip the tiny tokenizer's special tokens, as the warm start does


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    tiny = TinyModelConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=1790, help="the default world's tiny vocabulary")
    p.add_argument("--hidden-size", type=int, default=tiny.hidden_size)
    p.add_argument("--num-layers", type=int, default=tiny.num_layers)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    default = TinyModelConfig()
    tiny = replace(default, hidden_size=args.hidden_size, num_layers=args.num_layers, seed=args.seed,
                   intermediate_size=default.intermediate_size * args.hidden_size // default.hidden_size)
    model = init_tiny_model(tiny, tiny_qwen2_config(tiny, args.vocab_size))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)
    vocab = (FIRST_ID, args.vocab_size)
    curve: list[dict] = []
    start = time.perf_counter()
    for step in range(args.steps):
        ids, labels = recall_batch(vocab, args.pairs, args.batch_size, gen)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the warm start
        opt.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            curve.append({"step": step + 1, "loss": round(loss.item(), 4)})
            print(f"step {step + 1} loss {loss.item():.3f}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    formed = next((point["step"] for point in curve if point["loss"] < 1.0), None)
    result = {
        "benchmark": "recall_probe", "machine": machine_info(), "settings": vars(args),
        "chance_loss": round(math.log(args.vocab_size - FIRST_ID), 4), "curve": curve, "formed_at": formed,
        "final_loss": curve[-1]["loss"] if curve else None,
        "seconds_per_step": round(seconds / max(args.steps, 1), 4),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
