"""Run bookkeeping of an RL fit: step counts, the step-time split, rollout tokens and the running means
of every logged metric — the numbers of ``summary.json``, kept in every checkpoint so a resumed run
reports the whole run."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

__all__ = ["RunStats"]

#: Parts of a step's time that ``summary.json`` reports per step.
STEP_PARTS = ("generate", "score", "update")


class RunStats:
    """Counters of the RL steps done so far."""

    def __init__(self) -> None:
        self.rl_steps = 0
        self.times: dict[str, float] = defaultdict(float)
        self.rollout_tokens = 0
        self.metric_sums: dict[str, float] = defaultdict(float)
        self.metric_counts: dict[str, int] = defaultdict(int)

    def record_step(self, times: dict[str, float], rollout_tokens: int, metrics: dict[str, Any]) -> None:
        """Add one RL step: its time per part (seconds), completion tokens and logged metrics (finite
        numbers enter the running means)."""
        self.rl_steps += 1
        for part, seconds in times.items():
            self.times[part] += seconds
        self.rollout_tokens += rollout_tokens
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.metric_sums[k] += v
                self.metric_counts[k] += 1

    def summary(self) -> dict[str, Any]:
        """The run-level numbers of ``summary.json``."""
        steps = max(self.rl_steps, 1)
        return {
            "steps": self.rl_steps,
            "step_time_s": {k: self.times[k] / steps for k in STEP_PARTS},
            # part of "score": parsing, title matching and the reward components (advantages excluded)
            "reward_time_s": self.times["reward"] / steps,
            "rollout_tokens_per_s": self.rollout_tokens / max(self.times["generate"], 1e-9),
            "train_metrics_mean": {k: self.metric_sums[k] / self.metric_counts[k] for k in sorted(self.metric_sums)},
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "rl_steps": self.rl_steps,
            "times": dict(self.times),
            "rollout_tokens": self.rollout_tokens,
            "metric_sums": dict(self.metric_sums),
            "metric_counts": dict(self.metric_counts),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rl_steps = state.get("rl_steps", 0)
        self.times.update(state.get("times", {}))
        self.rollout_tokens = state.get("rollout_tokens", 0)
        self.metric_sums.update(state.get("metric_sums", {}))
        self.metric_counts.update(state.get("metric_counts", {}))
