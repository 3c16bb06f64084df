"""Reward-scoring throughput: batched scorer vs the plain-Python per-rollout reference; prints JSON.

    /work/venv/bin/python benchmarks/reward_throughput.py --json [--rollouts 20000] [--device cpu]
        [--propagation]

Movie scale: the 3,883 titles of the real MovieLens catalog (``../shared/data/recbench/movie/movies.dat``;
generated titles when it is absent), a random knowledge graph over them (genres, directors, actors,
writers, studios, language, country; Zipf-popular people), 6,040 users with ~1M random Zipf-popular
interactions, and item embeddings from a LightGCN propagation over that interaction graph (random
layer-0 weights: training does not change the cost of scoring).

Both paths score the same ``--rollouts`` completions (G per prompt, 1–4 truths per prompt) for the
full reward ``w_fmt·format + w_rec·NDCG@K + w_qas·QAS + w_pas·PAS`` including answer parsing and title
matching, each with its own fresh :class:`~rerec.data.matching.TitleMatcher` (same LRU cache size):

- vectorised: parse every answer, match the batch's distinct titles once, then NDCG@K, QAS and PAS for
  the whole batch with tensor ops (:func:`batched_ndcg_at_k`, :class:`GraphRewardScorer`);
- naive: :meth:`ReferenceScorer.reward` for one rollout at a time.

JSON fields: ``rollouts_per_s`` / ``naive_rollouts_per_s`` / ``speedup`` time the full path with fresh
(cold) matchers, best of ``--repeats``; ``equal`` says every component of every rollout agrees within
1e-6. Parsing and fuzzy matching are Python work per distinct title in both paths and dominate the
full path, so the JSON adds ``warm_matcher_*`` (LRU caches already filled, the steady state of
training), ``scoring_only_*`` (from matched ids to rewards: NDCG@K + QAS + PAS + total; vectorised
median of consecutive calls after a warm-up, naive median of the repeats), the vectorised time split,
``small_batch_ms_median`` (full path on one training-step batch), the graph build time, the scorer's
buffer memory and the process's peak RSS (dominated by generating the interactions).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import re
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from rerec.data.answer import parse_answer
from rerec.data.matching import TitleMatcher
from rerec.data.records import Interactions, Triple
from rerec.eval.metrics import ndcg_at_k
from rerec.graph.alignment import GraphRewardScorer
from rerec.graph.interactions import split_interactions
from rerec.graph.item_graph import ItemAttributeGraph
from rerec.graph.lightgcn_model import build_adjacency, make_lightgcn
from rerec.graph.reference import FORMAT_BAD, FORMAT_OK, REC_UNPARSABLE, ReferenceScorer, RewardWeights

MOVIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "recbench" / "movie" / "movies.dat"
NUM_ITEMS, NUM_USERS, NUM_INTERACTIONS = 3883, 6040, 1_000_209  # MovieLens-1M


# ------------------------------------------------------------------------------------------- world
def catalog_titles(rng: random.Random) -> dict[int, str]:
    """The real MovieLens titles when available, else unique generated ``Name (Year)`` titles."""
    if MOVIES.is_file():
        from rerec.data.movielens import read_movies

        return {i: item.title for i, item in read_movies(MOVIES).items()}
    words = [f"{a}{b}" for a in "BCDFGHKLMNPRSTVZ" for b in ("ara", "elo", "ion", "usk", "ent", "ova")]
    titles: dict[int, str] = {}
    while len(titles) < NUM_ITEMS:
        name = " ".join(rng.sample(words, rng.randint(1, 3)))
        title = f"{name}, The ({rng.randint(1930, 2000)})" if rng.random() < 0.2 else f"{name} ({rng.randint(1930, 2000)})"
        if title not in titles.values():
            titles[len(titles) + 1] = title
    return titles


def random_kg(item_ids: list[int], rng: np.random.Generator) -> list[Triple]:
    """About 16 facts per item; people drawn Zipf-like so that items share attributes."""

    def zipf_pick(n: int, size: int, prefix: str) -> list[str]:
        p = 1.0 / np.arange(1, n + 1) ** 0.8
        return [f"{prefix}{k}" for k in rng.choice(n, size=size, replace=False, p=p / p.sum())]

    triples: list[Triple] = []
    for item in item_ids:
        facts = [("Genre", g) for g in zipf_pick(18, int(rng.integers(1, 4)), "genre")]
        facts += [("Directed_by", p) for p in zipf_pick(2000, 1, "director")]
        facts += [("Written_by", p) for p in zipf_pick(3000, int(rng.integers(1, 3)), "writer")]
        facts += [("Starring", p) for p in zipf_pick(8000, int(rng.integers(3, 8)), "actor")]
        facts += [("Produced_by", p) for p in zipf_pick(300, int(rng.integers(1, 3)), "studio")]
        facts += [("Music_by", p) for p in zipf_pick(900, 1, "composer")]
        facts += [("Language", p) for p in zipf_pick(30, 1, "language")]
        facts += [("Production_Country", p) for p in zipf_pick(40, 1, "country")]
        triples += [Triple(item, r, v) for r, v in facts]
    return triples


def random_interactions(item_ids: list[int], rng: np.random.Generator) -> Interactions:
    """~1M distinct (user, item) pairs: per-user history sizes spread around MovieLens-1M's mean (166),
    items drawn without replacement with Zipf popularity (Gumbel top-k)."""
    num_items = len(item_ids)
    sizes = rng.lognormal(mean=0.0, sigma=0.8, size=NUM_USERS)
    sizes = np.clip(np.rint(sizes / sizes.sum() * NUM_INTERACTIONS), 20, num_items).astype(np.int64)
    log_pop = torch.from_numpy(-0.9 * np.log(np.arange(1, num_items + 1))[rng.permutation(num_items)]).float()
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    users, items = [], []
    for lo in range(0, NUM_USERS, 500):  # chunks keep the (users × items) noise small
        hi = min(lo + 500, NUM_USERS)
        gumbel = -torch.log(-torch.log(torch.rand(hi - lo, num_items, generator=generator)))
        order = (log_pop + gumbel).argsort(dim=1, descending=True)
        chosen = torch.arange(num_items).unsqueeze(0) < torch.from_numpy(sizes[lo:hi]).unsqueeze(1)
        users.append(torch.arange(lo + 1, hi + 1).unsqueeze(1).expand(-1, num_items)[chosen].numpy())
        items.append(np.asarray(item_ids)[order[chosen].numpy()])
    users, items = np.concatenate(users), np.concatenate(items)
    return Interactions(
        user_ids=users,
        item_ids=items,
        ratings=rng.integers(1, 6, size=users.size).astype(np.float32),
        timestamps=np.zeros(users.size, dtype=np.int64),
    )


def lightgcn_item_embeddings(interactions: Interactions, dim: int = 64) -> tuple[dict[str, torch.Tensor], dict]:
    """Item embeddings from one LightGCN propagation (CSR adjacency) over all interactions, timed."""
    start = time.perf_counter()
    split = split_interactions(interactions, val_fraction=0.0, min_rating=0.0)
    adj = build_adjacency(split, "csr")
    built = time.perf_counter()
    torch.manual_seed(0)
    model = make_lightgcn(split, dim, 3, "csr")
    with torch.no_grad():
        emb = model.get_embedding(adj)[split.num_users :]
    done = time.perf_counter()
    info = {
        "interaction_edges": int(split.train_users.numel()),
        "interaction_graph_build_s": round(built - start, 3),
        "lightgcn_propagation_s": round(done - built, 3),
    }
    return {"item_ids": split.item_ids, "embeddings": emb.contiguous()}, info


# ---------------------------------------------------------------------------------------- rollouts
def natural_order(title: str) -> str:
    m = re.match(r"^(.*), (The|A|An) (\(\d{4}\))$", title)
    return f"{m.group(2)} {m.group(1)} {m.group(3)}" if m else title.lower()


def typo(title: str, rng: random.Random) -> str:
    i = rng.randrange(max(1, len(title) - 7))
    return title[:i] + title[i + 1 :]


def make_rollouts(
    titles: dict[int, str], graph: ItemAttributeGraph, num_rollouts: int, group: int, seed: int
) -> tuple[list[str], list[list[int]]]:
    """``num_rollouts`` completions (``group`` per prompt) and the truths of each rollout's prompt.

    Answers: 35% a truth's catalog title, 15% a truth in natural order / lower case, 2% a truth with a
    typo (fuzzy match), 20% an item sharing an attribute with the truth, 13% a random item, 3% a title in
    no catalog, 12% unparsable (no box, an empty box, or a ``;`` list where one title is expected).
    """
    rng = random.Random(seed)
    ids = list(titles)
    by_attribute: dict[tuple[str, str], list[int]] = {}
    for item in ids:
        for a in graph.attributes_of(item):
            by_attribute.setdefault(a, []).append(item)
    completions, truths = [], []
    for _ in range(num_rollouts // group):
        truth = rng.sample(ids, rng.choice((1, 1, 1, 2, 2, 3, 4)))
        for _ in range(group):
            u = rng.random()
            t = rng.choice(truth)
            if u < 0.35:
                answer = titles[t]
            elif u < 0.50:
                answer = natural_order(titles[t])
            elif u < 0.52:
                answer = typo(titles[t], rng)
            elif u < 0.72:
                attrs = sorted(graph.attributes_of(t))
                answer = titles[rng.choice(by_attribute[rng.choice(attrs)])] if attrs else titles[rng.choice(ids)]
            elif u < 0.85:
                answer = titles[rng.choice(ids)]
            elif u < 0.88:
                answer = f"Qwxz Plorbt {rng.randint(0, 10**6)} (1999)"
            else:
                answer = None
            reasoning = (
                "The user asks for a film that matches the stated conditions.\n"
                f"Candidate {rng.randint(1, 20)} shares the director and the genre; the others do not.\n"
            )
            if answer is None:
                tail = rng.choice(("I would pick the second one.", "\\boxed{}", f"\\boxed{{{titles[t]}; {titles[ids[0]]}}}"))
            else:
                tail = f"Final answer: \\boxed{{{answer}}}"
            completions.append(reasoning + tail)
            truths.append(truth)
    return completions, truths


# ------------------------------------------------------------------------------------------- paths
def batched_ndcg_at_k(pred: torch.Tensor, truth: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@K of every row, binary relevance, as :func:`rerec.eval.metrics.ndcg_at_k`.

    ``pred`` (R, P) and ``truth`` (R, M) hold catalog ids right-padded with -1; a repeated prediction
    counts once; the ideal DCG uses ``min(#distinct truths, K)`` hits; no truth gives 0.
    """
    pred = pred[:, :k]
    width = pred.size(1)
    hit = ((pred.unsqueeze(2) == truth.unsqueeze(1)) & (truth != -1).unsqueeze(1)).any(dim=2) & (pred != -1)
    if width > 1:
        earlier = torch.tril(torch.ones(width, width, dtype=torch.bool, device=pred.device), diagonal=-1)
        hit &= ~((pred.unsqueeze(2) == pred.unsqueeze(1)) & earlier).any(dim=2)
    discount = 1.0 / torch.log2(torch.arange(max(k, 1), device=pred.device, dtype=torch.float32) + 2.0)
    dcg = (hit.to(torch.float32) * discount[:width]).sum(dim=1)
    ordered = truth.sort(dim=1).values
    distinct = (ordered != -1) & torch.cat(
        (torch.ones_like(ordered[:, :1], dtype=torch.bool), ordered[:, 1:] != ordered[:, :-1]), dim=1
    )
    n_ideal = distinct.sum(dim=1).clamp(max=k)
    ideal = torch.cumsum(discount, 0)[(n_ideal - 1).clamp(min=0)]
    return torch.where(n_ideal > 0, dcg / ideal, torch.zeros_like(dcg))


def vectorised(
    completions: list[str],
    truth: torch.Tensor,
    matcher: TitleMatcher,
    scorer: GraphRewardScorer,
    weights: RewardWeights,
    timings: dict[str, float],
) -> dict[str, torch.Tensor]:
    """Rewards of a whole batch: Python parse, one match per distinct title, tensor scoring."""
    start = time.perf_counter()
    max_titles = 1 if weights.k == 1 else weights.k
    parsed = [parse_answer(c, max_titles=max_titles) for c in completions]
    parsed_at = time.perf_counter()
    distinct = list({t for titles in parsed if titles for t in titles})
    id_of = {t: (-1 if m.item_id is None else m.item_id) for t, m in zip(distinct, matcher.match_many(distinct))}
    width = max(1, max((len(t) for t in parsed if t), default=1))
    pred = torch.tensor([[id_of[x] for x in t] + [-1] * (width - len(t)) if t else [-1] * width for t in parsed])
    ok = torch.tensor([t is not None for t in parsed])
    matched_at = time.perf_counter()
    out = score_ids(pred.to(truth.device), ok.to(truth.device), truth, scorer, weights)
    if truth.device.type == "cuda":
        torch.cuda.synchronize()
    done = time.perf_counter()
    for name, value in (("parse_s", parsed_at - start), ("match_s", matched_at - parsed_at), ("score_s", done - matched_at)):
        timings[name] = timings.get(name, 0.0) + value
    return out


def score_ids(
    pred: torch.Tensor, ok: torch.Tensor, truth: torch.Tensor, scorer: GraphRewardScorer, weights: RewardWeights
) -> dict[str, torch.Tensor]:
    """Tensor part of the reward: from matched ids (R, P), parse flags (R,) and truths (R, M)."""
    fmt = torch.where(ok, FORMAT_OK, FORMAT_BAD)
    rec = torch.where(ok, batched_ndcg_at_k(pred, truth, weights.k), REC_UNPARSABLE)
    graph = scorer(torch.where(ok, pred[:, 0], -1), truth)
    total = weights.w_fmt * fmt + weights.w_rec * rec + weights.w_qas * graph["qas"] + weights.w_pas * graph["pas"]
    return {"format": fmt, "rec": rec, "qas": graph["qas"], "pas": graph["pas"], "total": total}


def naive_ids(pred: list[list[int]], ok: list[bool], truths: list[list[int]], ref: ReferenceScorer, w: RewardWeights) -> list[float]:
    """Per-rollout reference of :func:`score_ids` (scoring only)."""
    totals = []
    for p, good, t in zip(pred, ok, truths):
        if not good:
            totals.append(w.w_fmt * FORMAT_BAD + w.w_rec * REC_UNPARSABLE)
            continue
        rec = ndcg_at_k(p, set(t), w.k)
        totals.append(w.w_fmt * FORMAT_OK + w.w_rec * rec + w.w_qas * ref.qas(p[0], t) + w.w_pas * ref.pas(p[0], t))
    return totals


def peak_rss_mb() -> float:
    """Peak resident memory of this process (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--rollouts", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=5, help="rollouts per prompt (G)")
    parser.add_argument("--k", type=int, default=1, help="NDCG cut-off K (1: candidate task)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per path (best is kept)")
    parser.add_argument("--small-batch", type=int, default=40, help="rollouts of the per-step latency probe")
    parser.add_argument("--propagation", action="store_true",
                        help="also time one LightGCN forward+backward per adjacency kind on the 1M-edge graph")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng, np_rng = random.Random(args.seed), np.random.default_rng(args.seed)
    weights = RewardWeights(k=args.k)
    device = torch.device(args.device)

    titles = catalog_titles(rng)
    triples = random_kg(list(titles), np_rng)
    embeddings, interaction_info = lightgcn_item_embeddings(random_interactions(list(titles), np_rng))
    start = time.perf_counter()
    graph = ItemAttributeGraph.from_triples(triples, titles)
    scorer = GraphRewardScorer(graph, embeddings).to(device)
    graph_build_s = time.perf_counter() - start
    reference = ReferenceScorer.from_graph(graph, embeddings)

    completions, truths = make_rollouts(titles, graph, args.rollouts, args.group, args.seed)
    width = max(len(t) for t in truths)
    truth = torch.tensor([t + [-1] * (width - len(t)) for t in truths], device=device)
    vectorised(completions[:64], truth[:64], TitleMatcher(titles), scorer, weights, {})  # warm-up

    # Full path, cold matchers: every repeat gets fresh TitleMatchers (empty LRU caches); best of N.
    fast_s = naive_s = float("inf")
    timings: dict[str, float] = {}
    for _ in range(args.repeats):
        matcher, naive_matcher = TitleMatcher(titles), TitleMatcher(titles)
        split: dict[str, float] = {}
        start = time.perf_counter()
        fast = vectorised(completions, truth, matcher, scorer, weights, split)
        elapsed = time.perf_counter() - start
        if elapsed < fast_s:
            fast_s, timings = elapsed, split
        start = time.perf_counter()
        slow = [reference.reward(c, t, naive_matcher, weights) for c, t in zip(completions, truths)]
        naive_s = min(naive_s, time.perf_counter() - start)
    max_error = max(
        float((fast[name].double().cpu() - torch.tensor([r[name] for r in slow], dtype=torch.float64)).abs().max())
        for name in ("format", "rec", "qas", "pas", "total")
    )

    # Full path, warm matchers (steady state of training: the LRU cache already holds these titles).
    start = time.perf_counter()
    vectorised(completions, truth, matcher, scorer, weights, {})
    warm_fast_s = time.perf_counter() - start
    start = time.perf_counter()
    for c, t in zip(completions, truths):
        reference.reward(c, t, naive_matcher, weights)
    warm_naive_s = time.perf_counter() - start

    # Scoring only: from matched ids to rewards (parsing and matching excluded from both).
    max_titles = 1 if args.k == 1 else args.k
    parsed = [parse_answer(c, max_titles=max_titles) for c in completions]
    ids = [[-1 if m.item_id is None else m.item_id for m in matcher.match_many(p)] if p else [-1] for p in parsed]
    p_width = max(len(i) for i in ids)
    pred = torch.tensor([i + [-1] * (p_width - len(i)) for i in ids], device=device)
    ok = torch.tensor([p is not None for p in parsed], device=device)
    # Steady state (consecutive calls after a warm-up), median of the repeats, for both paths.
    score_ids(pred, ok, truth, scorer, weights)
    fast_runs, naive_runs = [], []
    for _ in range(2 * args.repeats + 1):
        start = time.perf_counter()
        fast_totals = score_ids(pred, ok, truth, scorer, weights)["total"]
        if device.type == "cuda":
            torch.cuda.synchronize()
        fast_runs.append(time.perf_counter() - start)
    for _ in range(args.repeats):
        start = time.perf_counter()
        slow_totals = naive_ids(ids, [p is not None for p in parsed], truths, reference, weights)
        naive_runs.append(time.perf_counter() - start)
    fast_score_s, naive_score_s = float(np.median(fast_runs)), float(np.median(naive_runs))
    scoring_error = float((fast_totals.double().cpu() - torch.tensor(slow_totals, dtype=torch.float64)).abs().max())

    # Latency of one small training-step batch (B·G rollouts), full path, median of 30 calls.
    small = []
    for rep in range(30):
        lo = (rep * args.small_batch) % max(1, args.rollouts - args.small_batch)
        start = time.perf_counter()
        vectorised(completions[lo : lo + args.small_batch], truth[lo : lo + args.small_batch], matcher, scorer, weights, {})
        small.append(time.perf_counter() - start)

    result = {
        "rollouts": len(completions),
        "repeats": args.repeats,
        "rollouts_per_s": round(len(completions) / fast_s, 1),
        "naive_rollouts_per_s": round(len(completions) / naive_s, 1),
        "speedup": round(naive_s / fast_s, 2),
        "equal": max_error <= 1e-6,
        "max_abs_error": max_error,
        "vectorised_split_s": {k: round(v, 4) for k, v in timings.items()},
        "warm_matcher_rollouts_per_s": round(len(completions) / warm_fast_s, 1),
        "warm_matcher_naive_rollouts_per_s": round(len(completions) / warm_naive_s, 1),
        "warm_matcher_speedup": round(warm_naive_s / warm_fast_s, 2),
        "scoring_only_rollouts_per_s": round(len(completions) / fast_score_s, 1),
        "naive_scoring_only_rollouts_per_s": round(len(completions) / naive_score_s, 1),
        "scoring_only_speedup": round(naive_score_s / fast_score_s, 2),
        "scoring_only_equal": scoring_error <= 1e-6,
        "small_batch_rollouts": args.small_batch,
        "small_batch_ms_median": round(1000 * sorted(small)[len(small) // 2], 3),
        "graph_build_s": round(graph_build_s, 3),
        "graph": {
            "items": graph.num_items,
            "attributes": graph.num_attributes,
            "item_attribute_edges": graph.num_edges,
            "users": NUM_USERS,
            **interaction_info,
        },
        "unparsable_share": round(1 - float(ok.float().mean()), 4),
        "weights": dataclasses.asdict(weights),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "scorer_buffers_mb": round(sum(b.numel() * b.element_size() for b in scorer.buffers()) / 2**20, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "catalog": "movielens movies.dat" if MOVIES.is_file() else "generated titles",
        },
    }
    if args.propagation:
        result["lightgcn_forward_backward_s"] = time_propagation(np_rng, list(titles))
    print(json.dumps(result, indent=None if args.json else 2))


def time_propagation(np_rng: np.random.Generator, item_ids: list[int]) -> dict[str, float]:
    """Seconds of one LightGCN (64 dims, 3 layers) forward+backward per adjacency kind, best of 3."""
    split = split_interactions(random_interactions(item_ids, np_rng), val_fraction=0.0, min_rating=0.0)
    out = {}
    for kind in ("csr", "coo", "edge_index"):
        model, adj = make_lightgcn(split, 64, 3, kind), build_adjacency(split, kind)  # type: ignore[arg-type]
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Converting sparse tensor to CSR")  # the "coo" path
                model.get_embedding(adj).square().sum().backward()
            best = min(best, time.perf_counter() - start)
        out[kind] = round(best, 3)
    return out


if __name__ == "__main__":
    main()
