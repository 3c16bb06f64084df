"""Run bookkeeping of an RL fit: step counts, the step-time split, rollout tokens and the running means
of every logged metric — the numbers of ``summary.json``, kept in every checkpoint so a resumed run
reports the whole run."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from rerec.rl.learning_signal import LearningSignal

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
        self.metric_left_out: dict[str, int] = defaultdict(int)
        self.wall_time_before = 0.0  # seconds of the earlier segments (up to the checkpoint resumed from)
        self.segments: list[dict[str, Any]] = []  # earlier segments; the current one is begun by begin_segment
        self._segment: dict[str, Any] | None = None
        self._segment_start = 0.0
        self.signal = LearningSignal()

    def begin_segment(self, run_dir: str, resumed_from: str | None = None) -> None:
        """Start timing this process's part of the run (a fresh fit, or a resume from a checkpoint)."""
        self._segment_start = time.perf_counter()
        self._segment = {"run_dir": run_dir, "resumed_from": resumed_from, "first_step": self.rl_steps + 1}

    def wall_time_s(self) -> float:
        """Seconds of RL over every segment: the earlier ones up to their checkpoint, this one until now."""
        now = time.perf_counter() - self._segment_start if self._segment is not None else 0.0
        return self.wall_time_before + now

    def all_segments(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every segment with its RL-step range and run folder. An earlier segment (``status``
        ``continued``) ends at the checkpoint the next one resumed from: rows of its run folder past its
        ``last_step`` belong to steps that the next segment redid, and are superseded by them."""
        if self._segment is None:
            return list(self.segments)
        current = {**self._segment, "last_step": self.rl_steps,
                   "wall_time_s": time.perf_counter() - self._segment_start}
        if status is not None:
            current["status"] = status
        return [*self.segments, current]

    def record_step(self, times: dict[str, float], rollout_tokens: int, metrics: dict[str, Any]) -> None:
        """Add one RL step: its time per part (seconds), completion tokens and logged metrics (finite
        numbers enter the running means)."""
        self.rl_steps += 1
        for part, seconds in times.items():
            self.times[part] += seconds
        self.rollout_tokens += rollout_tokens
        self.signal.record(metrics)
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.metric_sums[k] += v
                self.metric_counts[k] += 1
            elif isinstance(v, (int, float)):
                self.metric_left_out[k] += 1

    def summary(self, status: str | None = None) -> dict[str, Any]:
        """The run-level numbers of ``summary.json``; ``status`` is the current segment's."""
        steps = max(self.rl_steps, 1)
        return {
            "steps": self.rl_steps,
            "step_time_s": {k: self.times[k] / steps for k in STEP_PARTS},
            # part of "score": parsing, title matching and the reward components (advantages excluded)
            "reward_time_s": self.times["reward"] / steps,
            "rollout_tokens_per_s": self.rollout_tokens / max(self.times["generate"], 1e-9),
            "train_metrics_mean": {k: self.metric_sums[k] / self.metric_counts[k] for k in sorted(self.metric_sums)},
            # values left out of those means because they were NaN or infinite, per metric
            "train_metrics_left_out": {k: n for k, n in sorted(self.metric_left_out.items()) if n},
            "wall_time_s": self.wall_time_s(),
            "segments": self.all_segments(status),
            "learning_signal": self.signal.summary(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "rl_steps": self.rl_steps,
            "times": dict(self.times),
            "rollout_tokens": self.rollout_tokens,
            "metric_sums": dict(self.metric_sums),
            "metric_counts": dict(self.metric_counts),
            "metric_left_out": dict(self.metric_left_out),
            "wall_time_s": self.wall_time_s(),
            "segments": self.all_segments(status="continued"),
            "learning_signal": self.signal.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rl_steps = state.get("rl_steps", 0)
        self.times.update(state.get("times", {}))
        self.rollout_tokens = state.get("rollout_tokens", 0)
        self.metric_sums.update(state.get("metric_sums", {}))
        self.metric_counts.update(state.get("metric_counts", {}))
        self.metric_left_out.update(state.get("metric_left_out", {}))
        self.wall_time_before = state.get("wall_time_s", 0.0)
        self.segments = list(state.get("segments", []))
        self.signal.load_state_dict(state.get("learning_signal", {}))
