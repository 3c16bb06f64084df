"""Reward throughput: the training reward, batched, vs a plain-Python per-rollout reference; prints JSON.

    python benchmarks/reward_throughput.py --json [--rollouts 20000] [--device cpu]
        [--task candidate|open] [--k 1] [--candidates 20] [--require-candidate] [--propagation]

Movie scale: the 3,883 titles of the real MovieLens catalog (``data/recbench/movie/movies.dat`` when
the RecBench+ download is there; generated titles otherwise), a random knowledge graph over them (genres, directors,
actors, writers, studios, language, country; Zipf-popular people), 6,040 users with ~1M random
Zipf-popular interactions, and item embeddings from a LightGCN propagation over that interaction graph
(random layer-0 weights: training does not change the cost of scoring).

Both paths compute the reward training uses — :class:`~rerec.rl.rewards.RecReward` with the components
``FormatReward(), NDCGReward(), QASReward(), PASReward()`` (format 0.1, NDCG@K 1.0, QAS 0.01, PAS 0.01;
QAS / PAS are the mean over an answer's first K predictions; candidate matching and
``require_candidate`` as configured) — on the same ``--rollouts`` completions (G per prompt, 1–4 truths
per prompt, candidate or open tasks), including answer parsing and title matching, each with its own
fresh :class:`~rerec.data.matching.TitleMatcher` (same LRU cache size):

- vectorised: ``RecReward(...)(completions, tasks)`` on the whole batch, the graph scores from one
  :class:`~rerec.graph.alignment.GraphRewardScorer` call (this is exactly the training call, which also
  fills the curriculum's NDCG and the RAAE bookkeeping);
- naive: one rollout at a time, the same reading (:meth:`RecReward.read`: parse, candidate-aware
  matching, ``require_candidate``), then format, NDCG@K and the mean of
  :meth:`~rerec.graph.reference.ReferenceScorer.qas` / ``.pas`` over the first K predictions in plain
  Python (weights and penalties read from the same component objects).

Before anything is timed, both paths score every rollout and the benchmark stops unless every
component and total agrees within 1e-5 (``equal`` / ``max_abs_error`` in the JSON): it cannot time two
different rewards.

JSON fields: ``rollouts_per_s`` / ``naive_rollouts_per_s`` / ``speedup`` time the full path with fresh
(cold) matchers, best of ``--repeats``. Parsing and fuzzy matching are Python work per title in both
paths and dominate the full path, so the JSON adds ``warm_matcher_*`` (catalog LRU caches already
filled, the steady state of training; matching among a prompt's candidates is never cached),
``scoring_only_*`` (from an already-read batch to total rewards: vectorised median of consecutive calls
after a warm-up, naive median of the repeats), the vectorised time split (``read_s``: one cold read;
``score_s``: the scoring-only median), ``small_batch_ms_median`` (full path on one training-step
batch), the graph build time, the scorer's buffer memory and the process's peak RSS (dominated by
generating the interactions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rerec.data.matching import TitleMatcher
from rerec.data.records import Interactions, Item, Query, QueryType, Triple
from rerec.data.tasks import RecTask
from rerec.eval.metrics import ndcg_at_k
from rerec.graph.alignment import GraphRewardScorer
from rerec.graph.interactions import split_interactions
from rerec.graph.item_graph import ItemAttributeGraph
from rerec.graph.lightgcn_model import build_adjacency, make_lightgcn
from rerec.graph.reference import ReferenceScorer
from rerec.rl.reward_components import AnswerBatch, FormatReward, NDCGReward, PASReward, QASReward, RewardComponent
from rerec.rl.rewards import RecReward, RewardConfig

# Where the README puts the RecBench+ download (the MovieLens-1M catalog); generated titles without it.
MOVIES = Path(__file__).resolve().parents[1] / "data" / "recbench" / "movie" / "movies.dat"
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
    titles: dict[int, str],
    graph: ItemAttributeGraph,
    num_rollouts: int,
    group: int,
    seed: int,
    task_kind: str = "candidate",
    num_candidates: int = 20,
    max_titles: int = 1,
) -> tuple[list[str], list[RecTask]]:
    """``num_rollouts`` completions (``group`` per prompt) and the task each one answers.

    A prompt has 1–4 truths. A candidate task lists its target (the first truth) among
    ``num_candidates − 1`` random non-truth items; an open task lists nothing and the answer holds 1 to
    ``max_titles`` titles. 12% of answers are no answer: no box, an empty box, or a hedged ``A; B`` (which,
    where one title is expected, parses as one title that matches nothing). Each title of the other
    answers is 35% a truth's catalog title (the target in the candidate task), 15% that title in natural
    order / lower case, 2% with a typo (fuzzy match), 20% an item sharing an attribute with it (mostly
    off the candidate list), 13% a random item (a random candidate in the candidate task), 3% a title in
    no catalog.
    """
    rng = random.Random(seed)
    ids = list(titles)
    by_attribute: dict[tuple[str, str], list[int]] = {}
    for item in ids:
        for a in graph.attributes_of(item):
            by_attribute.setdefault(a, []).append(item)

    def answer_title(truth: list[int], task: RecTask) -> str:
        u = 0.88 * rng.random()
        t = task.target_id if task.candidate_ids else rng.choice(truth)
        if u < 0.35:
            return titles[t]
        if u < 0.50:
            return natural_order(titles[t])
        if u < 0.52:
            return typo(titles[t], rng)
        if u < 0.72:
            attrs = sorted(graph.attributes_of(t))
            return titles[rng.choice(by_attribute[rng.choice(attrs)])] if attrs else titles[rng.choice(ids)]
        if u < 0.85:
            return titles[rng.choice(task.candidate_ids or ids)]
        return f"Qwxz Plorbt {rng.randint(0, 10**6)} (1999)"

    completions, tasks = [], []
    for n in range(num_rollouts // group):
        truth = rng.sample(ids, rng.choice((1, 1, 1, 2, 2, 3, 4)))
        query = Query(f"bench/{n}", "movie", QueryType.EXPLICIT, "", truth_item_ids=tuple(truth))
        task = RecTask(query)
        if task_kind == "candidate":
            negatives = [i for i in rng.sample(ids, num_candidates + len(truth)) if i not in truth]
            listed = negatives[: num_candidates - 1] + [truth[0]]
            rng.shuffle(listed)
            task = RecTask(query, tuple(listed), truth[0])
        for _ in range(group):
            reasoning = (
                "The user asks for a film that matches the stated conditions.\n"
                f"Candidate {rng.randint(1, 20)} shares the director and the genre; the others do not.\n"
            )
            if rng.random() < 0.12:
                hedged = f"\\boxed{{{titles[truth[0]]}; {titles[ids[0]]}}}"
                tail = rng.choice(("I would pick the second one.", "\\boxed{}", hedged))
            else:
                count = 1 if max_titles == 1 else rng.randint(1, max_titles)
                tail = f"Final answer: \\boxed{{{'; '.join(answer_title(truth, task) for _ in range(count))}}}"
            completions.append(reasoning + tail)
            tasks.append(task)
    return completions, tasks


# ------------------------------------------------------------------------------------------- paths
COMPONENTS = ("format", "ndcg", "qas", "pas")
TOLERANCE = 1e-5


def training_components(scorer: GraphRewardScorer) -> list[RewardComponent]:
    """The reward's terms as training configures them by default, set up with the graph scorer."""
    components = [FormatReward(), NDCGReward(), QASReward(), PASReward()]
    for component in components:
        component.setup(None, scorer)
    return components


def vectorised(
    reward: RecReward, completions: Sequence[str], tasks: Sequence[RecTask], device: torch.device
) -> dict[str, torch.Tensor]:
    """The training call on the whole batch: every component's raw value and the total."""
    out = reward(completions, tasks, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {**out.components, "total": out.total}


def score_read(components: Sequence[RewardComponent], batch: AnswerBatch) -> torch.Tensor:
    """Total reward of an already-read batch (scoring only), graph scores recomputed."""
    batch.cache.clear()
    total = torch.zeros(len(batch), device=batch.device)
    for component in components:
        total = total + component.weight * component(batch)
    if total.device.type == "cuda":
        torch.cuda.synchronize()
    return total


class NaiveReward:
    """The same reward one rollout at a time: :meth:`RecReward.read` of that rollout, then the components
    in plain Python, QAS / PAS from :class:`ReferenceScorer` averaged over the first K predictions."""

    def __init__(self, reward: RecReward, reference: ReferenceScorer) -> None:
        self.reward, self.reference = reward, reference
        self.by_name = {c.name: c for c in reward.components}
        if set(self.by_name) != set(COMPONENTS):
            raise ValueError(f"the naive path knows the components {COMPONENTS}, got {sorted(self.by_name)}")

    def score(self, ids: list[int], ok: bool, task: RecTask) -> dict[str, float]:
        """Raw components and total of one read rollout (``ok``: the answer counts as an answer)."""
        fmt, ndcg, k = self.by_name["format"], self.by_name["ndcg"], self.reward.config.k
        first = ids[:k] if ok else []
        truths = task.truth_ids
        values = {
            "format": fmt.format_reward if ok else fmt.unparsable_penalty,
            "ndcg": ndcg_at_k(ids, set(task.answer_ids), k) if ok else ndcg.unparsable_penalty,
            "qas": sum(self.reference.qas(p, truths) for p in first) / len(first) if first else 0.0,
            "pas": sum(self.reference.pas(p, truths) for p in first) / len(first) if first else 0.0,
        }
        values["total"] = sum(self.by_name[name].weight * values[name] for name in COMPONENTS)
        return values

    def __call__(self, completions: Sequence[str], tasks: Sequence[RecTask]) -> list[dict[str, float]]:
        rows = []
        for text, task in zip(completions, tasks, strict=True):
            batch = self.reward.read([text], [task])
            rows.append(self.score(batch.predicted_ids[0], batch.scorable[0], task))
        return rows


def max_abs_error(fast: dict[str, torch.Tensor], slow: list[dict[str, float]], names: Sequence[str]) -> float:
    """Largest difference between the two paths over the given components, every rollout."""
    return max(
        float((fast[name].double().cpu() - torch.tensor([r[name] for r in slow], dtype=torch.float64)).abs().max())
        for name in names
    )


def require_equal(what: str, error: float) -> None:
    """Stop before timing when the two paths do not compute the same reward."""
    if not error <= TOLERANCE:
        raise SystemExit(f"{what}: batched and per-rollout rewards differ by {error:.3g} (> {TOLERANCE}); not timed")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--rollouts", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=5, help="rollouts per prompt (G)")
    parser.add_argument("--task", choices=("candidate", "open"), default="candidate",
                        help="candidate: one title among the listed candidates; open: up to K titles")
    parser.add_argument("--candidates", type=int, default=20, help="candidates per prompt (candidate task)")
    parser.add_argument("--k", type=int, default=1, help="cut-off K of NDCG@K and of the graph scores")
    parser.add_argument("--require-candidate", action="store_true",
                        help="reward.require_candidate: an off-list answer counts as no answer")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per path (best is kept)")
    parser.add_argument("--small-batch", type=int, default=40, help="rollouts of the per-step latency probe")
    parser.add_argument("--propagation", action="store_true",
                        help="also time one LightGCN forward+backward per adjacency kind on the 1M-edge graph")
    args = parser.parse_args()
    if args.rollouts < args.group:
        parser.error("--rollouts must be at least --group")
    if args.task == "candidate" and args.candidates < 2:
        parser.error("--candidates must be at least 2")
    torch.set_num_threads(args.threads)
    rng, np_rng = random.Random(args.seed), np.random.default_rng(args.seed)
    device = torch.device(args.device)

    titles = catalog_titles(rng)
    triples = random_kg(list(titles), np_rng)
    embeddings, interaction_info = lightgcn_item_embeddings(random_interactions(list(titles), np_rng))
    start = time.perf_counter()
    graph = ItemAttributeGraph.from_triples(triples, titles)
    scorer = GraphRewardScorer(graph, embeddings).to(device)
    graph_build_s = time.perf_counter() - start
    reference = ReferenceScorer.from_graph(graph, embeddings)

    items = {i: Item(i, title) for i, title in titles.items()}
    config = RewardConfig(k=args.k, require_candidate=args.require_candidate)
    max_titles = 1 if args.task == "candidate" else args.k
    components = training_components(scorer)

    def fresh() -> RecReward:
        """The training reward with its own cold catalog matcher."""
        return RecReward(config, items, TitleMatcher(titles), components, max_titles)

    completions, tasks = make_rollouts(
        titles, graph, args.rollouts, args.group, args.seed, args.task, args.candidates, max_titles
    )

    # Both paths on every rollout, untimed (also the warm-up): they must compute the same reward.
    fast = vectorised(fresh(), completions, tasks, device)
    max_error = max_abs_error(fast, NaiveReward(fresh(), reference)(completions, tasks), (*COMPONENTS, "total"))
    require_equal("full path", max_error)

    # Full path, cold matchers: every repeat gets fresh TitleMatchers (empty LRU caches); best of N.
    fast_s = naive_s = float("inf")
    for _ in range(args.repeats):
        reward, naive = fresh(), NaiveReward(fresh(), reference)
        start = time.perf_counter()
        vectorised(reward, completions, tasks, device)
        fast_s = min(fast_s, time.perf_counter() - start)
        start = time.perf_counter()
        naive(completions, tasks)
        naive_s = min(naive_s, time.perf_counter() - start)

    # Full path, warm matchers (steady state of training: the LRU cache already holds these titles).
    start = time.perf_counter()
    vectorised(reward, completions, tasks, device)
    warm_fast_s = time.perf_counter() - start
    start = time.perf_counter()
    naive(completions, tasks)
    warm_naive_s = time.perf_counter() - start

    # Scoring only: from an already-read batch (parsed, matched) to total rewards.
    start = time.perf_counter()
    batch = fresh().read(completions, tasks, device)
    read_s = time.perf_counter() - start
    rows = list(zip(batch.predicted_ids, batch.scorable, tasks))
    fast_totals = score_read(components, batch)  # warm-up
    slow_totals = [naive.score(ids, ok, task) for ids, ok, task in rows]
    scoring_error = max_abs_error({"total": fast_totals}, slow_totals, ("total",))
    require_equal("scoring only", scoring_error)
    fast_runs, naive_runs = [], []
    for _ in range(2 * args.repeats + 1):  # steady state: consecutive calls after the warm-up
        start = time.perf_counter()
        score_read(components, batch)
        fast_runs.append(time.perf_counter() - start)
    for _ in range(args.repeats):
        start = time.perf_counter()
        [naive.score(ids, ok, task) for ids, ok, task in rows]
        naive_runs.append(time.perf_counter() - start)
    fast_score_s, naive_score_s = float(np.median(fast_runs)), float(np.median(naive_runs))

    # Latency of one small training-step batch (B·G rollouts), full path, median of 30 calls.
    small = []
    for rep in range(30):
        lo = (rep * args.small_batch) % max(1, args.rollouts - args.small_batch)
        start = time.perf_counter()
        vectorised(reward, completions[lo : lo + args.small_batch], tasks[lo : lo + args.small_batch], device)
        small.append(time.perf_counter() - start)

    result = {
        "rollouts": len(completions),
        "repeats": args.repeats,
        "rollouts_per_s": round(len(completions) / fast_s, 1),
        "naive_rollouts_per_s": round(len(completions) / naive_s, 1),
        "speedup": round(naive_s / fast_s, 2),
        "equal": max_error <= TOLERANCE,
        "max_abs_error": max_error,
        "vectorised_split_s": {"read_s": round(read_s, 4), "score_s": round(fast_score_s, 4)},
        "warm_matcher_rollouts_per_s": round(len(completions) / warm_fast_s, 1),
        "warm_matcher_naive_rollouts_per_s": round(len(completions) / warm_naive_s, 1),
        "warm_matcher_speedup": round(warm_naive_s / warm_fast_s, 2),
        "scoring_only_rollouts_per_s": round(len(completions) / fast_score_s, 1),
        "naive_scoring_only_rollouts_per_s": round(len(completions) / naive_score_s, 1),
        "scoring_only_speedup": round(naive_score_s / fast_score_s, 2),
        "scoring_only_equal": scoring_error <= TOLERANCE,
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
        "unparsable_share": round(sum(p is None for p in batch.parsed) / len(batch), 4),
        "unscorable_share": round(1 - sum(batch.scorable) / len(batch), 4),
        "task": {"kind": args.task, "candidates": args.candidates if args.task == "candidate" else 0,
                 "max_titles": max_titles, "require_candidate": args.require_candidate},
        "weights": {**{c.name: c.weight for c in components}, "k": args.k},
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
