"""Scoring one micro-batch's logits at Qwen2.5's vocabulary: the earlier way (concatenate the two logit
blocks, one ``logsumexp`` for the log-probs and a softmax + ``logsumexp`` for the entropy) against the
current one (blocks scored apart, one ``logsumexp`` shared by both). Forward + backward, 1 thread.

    python benchmarks/logprob_scoring.py --rows 4 --length 256     # one variant per process, alternating

Prints one JSON object: seconds (mean of 2 after a warm-up) and peak RSS of each variant's process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

V = 151_936


def _run(variant: str, rows: int, length: int) -> dict[str, float]:
    import torch

    from rerec.rl.logprobs import selective_log_softmax, selective_log_softmax_and_entropy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    first = torch.randn(rows, 1, V, requires_grad=True)
    rest = torch.randn(rows, length - 1, V, requires_grad=True)
    index = torch.randint(0, V, (rows, length))

    def earlier() -> None:
        logits = torch.cat([first, rest], 1)
        logps = selective_log_softmax(logits, index)
        with torch.no_grad():
            for z in logits.detach():
                torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)
        logps.sum().backward()

    def current() -> None:
        a, _ = selective_log_softmax_and_entropy(first, index[:, :1])
        b, _ = selective_log_softmax_and_entropy(rest, index[:, 1:])
        torch.cat([a, b], 1).sum().backward()

    step = earlier if variant == "earlier" else current
    step()
    t0 = time.perf_counter()
    step()
    step()
    return {"s": (time.perf_counter() - t0) / 2, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variant", choices=["earlier", "current"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(_run(args.variant, args.rows, args.length)))
        return
    out: dict[str, list[dict[str, float]]] = {"earlier": [], "current": []}
    for _ in range(args.repeats):
        for variant in out:
            done = subprocess.run([sys.executable, __file__, "--variant", variant, "--rows", str(args.rows),
                                   "--length", str(args.length)], capture_output=True, text=True, check=True)
            out[variant].append(json.loads(done.stdout))
    print(json.dumps({"rows": args.rows, "length": args.length, "vocab": V, **out}, indent=2))


if __name__ == "__main__":
    main()
