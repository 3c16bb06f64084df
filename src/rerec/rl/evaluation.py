"""Held-out evaluation of the policy: greedy answers (per-type metrics) and sampled answers (the
distribution RL trains: mean accuracy of one sampled answer and pass@n).

Answers come from the run's rollout engine and are read by the reward's one parse-and-match path
(:meth:`~rerec.rl.rewards.RecReward.read`), exactly as training reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from rerec.data.tasks import RecTask
from rerec.eval.report import EvalRecord, aggregate, sampled_summary
from rerec.progress import progress
from rerec.rl.engines import RolloutEngine, engine_context
from rerec.rl.rewards import RecReward
from rerec.rl.rollout import GenerationConfig

__all__ = ["Evaluator", "accuracy_summary"]


def accuracy_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Overall and per-type accuracy (and the query count) of an :func:`~rerec.eval.report.aggregate`."""
    return {
        "accuracy": result["overall"]["accuracy"],
        "accuracy_by_type": {t: m["accuracy"] for t, m in result["by_type"].items()},
        "count": result["overall"]["count"],
    }


class Evaluator:
    """Answers tasks with the engine and scores them.

    Args:
        engine: The rollout engine (the same one training samples with).
        reward: Reads answers (parse, match).
        prompt_ids: Query id → prompt token ids.
        generation: Rollout sampling settings (the sampled evaluation uses them).
        max_new_tokens: Completion budget of evaluation; ``None``: the rollout budget.
        batch_size: Generated rows per engine call (ignored by an engine that ``batches_itself``).
        k: Cut-off of the per-type metrics.
        attributes: Item facts, for the condition-satisfaction metric.
        seed: Seed of the sampled evaluation's own random stream.
        device: Where the engine draws its samples (whose random stream is forked).
    """

    def __init__(
        self, engine: RolloutEngine, reward: RecReward, prompt_ids: Mapping[str, list[int]],
        generation: GenerationConfig, max_new_tokens: int | None, batch_size: int, k: int,
        attributes: Mapping[int, set[tuple[str, str]]], seed: int, device: Callable[[], torch.device],
    ) -> None:
        self.engine = engine
        self.reward = reward
        self.prompt_ids = prompt_ids
        self.generation = generation
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.k = k
        self.attributes = attributes
        self.seed = seed
        self.device = device

    @property
    def config(self) -> GenerationConfig:
        """The generation settings of evaluation (the rollout's, with the evaluation budget)."""
        if self.max_new_tokens:
            return replace(self.generation, max_completion_length=self.max_new_tokens)
        return self.generation

    @torch.no_grad()
    def generate_answers(self, tasks: list[RecTask], samples: int = 0) -> list[EvalRecord]:
        """Answers for ``tasks`` as evaluation records (parsed, matched, with the truth).

        Greedy by default; ``samples`` > 0 samples that many answers per task as the rollouts do, each
        task's records contiguous.
        """
        n = samples or 1
        with engine_context(self.engine):
            ro = self.engine.generate([self.prompt_ids[t.query_id] for t in tasks], self.config,
                                      num_generations=n, greedy=not samples)
        rows = [t for t in tasks for _ in range(n)]
        read = self.reward.read(ro.texts, rows)
        return [
            EvalRecord(
                query_id=t.query_id, query_type=t.query_type, completion=text,
                parsed_titles=parsed, matched_item_ids=ids, match_kinds=kinds,
                truth_item_ids=list(t.answer_ids), conditions=[tuple(c) for c in t.query.conditions],
                candidate_item_ids=list(t.candidate_ids), as_asked=asked,
            )
            for t, text, parsed, ids, kinds, asked in zip(rows, ro.texts, read.parsed, read.predicted_ids,
                                                          read.match_kinds, read.as_asked)
        ]

    def records(self, tasks: list[RecTask], samples: int = 0) -> list[EvalRecord]:
        """:meth:`generate_answers` over ``tasks`` in chunks of ``batch_size`` generated rows (all at once
        for an engine that schedules its own batches)."""
        if getattr(self.engine, "batches_itself", False):
            step = max(len(tasks), 1)
        else:
            step = max(1, self.batch_size // max(samples, 1))
        out: list[EvalRecord] = []
        desc = f"held-out answers ({samples} sampled each)" if samples else "held-out answers (greedy)"
        for start in progress(range(0, len(tasks), step), desc=desc, unit="batch"):
            out += self.generate_answers(tasks[start : start + step], samples=samples)
        return out

    def greedy(self, tasks: list[RecTask]) -> dict[str, Any]:
        """Aggregate metrics (overall and per query type) of greedy answers to ``tasks``."""
        return self.aggregate(self.records(tasks))

    def aggregate(self, records: list[EvalRecord]) -> dict[str, Any]:
        """Per-type metrics of ``records`` at this evaluation's K."""
        return aggregate(records, self.k, self.attributes)

    def sampled(self, tasks: list[RecTask], samples: int) -> dict[str, Any]:
        """:func:`~rerec.eval.report.sampled_summary` of ``samples`` sampled answers per task.

        Sampling runs on a forked random stream seeded with ``seed``: the same policy always gets the
        same score, and training's random stream is left where it was.
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        device = self.device()
        accelerator = [] if device.type == "cpu" else [device.index or 0]
        with torch.random.fork_rng(devices=accelerator, device_type=device.type if accelerator else None):
            torch.manual_seed(self.seed)
            records = self.records(tasks, samples)
        cfg = self.config
        return {**sampled_summary(records, samples), "temperature": cfg.temperature, "top_p": cfg.top_p,
                "top_k": cfg.top_k, "max_new_tokens": cfg.max_completion_length}


def headline(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """A fit's claim: held-out accuracy of *sampled* answers before → after RL (what RL optimises: the
    expected reward of a sampled answer), with pass@n and greedy accuracy beside it.

    Without a sampled evaluation (``eval_samples: 0``) the headline is greedy accuracy, and says so.
    ``before``/``after`` are ``summary.json``'s ``val_before``/``val_after``.
    """
    greedy = {"before": before["accuracy"], "after": after["accuracy"], "change": after["accuracy"] - before["accuracy"]}
    sb, sa = before.get("sampled"), after.get("sampled")
    if not (sb and sa):
        return {"metric": "greedy held-out accuracy", "definition": "NDCG@1 of the greedy answer, mean over "
                f"{after['count']} held-out queries", **greedy}
    return {
        "metric": "sampled held-out accuracy",
        "definition": (f"NDCG@1 of an answer sampled as the rollouts are (temperature {sa['temperature']}, "
                       f"top-p {sa['top_p']}, top-k {sa['top_k']}), mean over {sa['samples']} samples of each of "
                       f"{sa['count']} held-out queries"),
        "before": sb["accuracy"], "after": sa["accuracy"], "change": sa["accuracy"] - sb["accuracy"],
        "pass_at_n": {"n": sa["samples"], "before": sb["pass_at_n"], "after": sa["pass_at_n"]},
        "greedy": greedy,
    }


def headline_line(h: dict[str, Any]) -> str:
    """One log line of :func:`headline`."""
    line = f"{h['metric']} {h['before']:.3f} -> {h['after']:.3f} ({h['change']:+.3f})"
    if "pass_at_n" in h:
        p, g = h["pass_at_n"], h["greedy"]
        line += f"; pass@{p['n']} {p['before']:.3f} -> {p['after']:.3f}; greedy {g['before']:.3f} -> {g['after']:.3f}"
    return line
