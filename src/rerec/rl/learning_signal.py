"""A loud warning when RL has nothing to learn from.

With every reward of a group equal (no answer parses, or every answer is equally wrong) the group's
advantages are zero, and so are the loss and the gradient: a run can "complete" without changing the
policy. The first ``window`` RL steps are watched; when none of them had an informative group
(``frac_reward_zero_std`` 1) or a parsable answer (``completions/parse_rate`` 0), a warning says what to
check, and ``summary.json``'s ``learning_signal`` records it with counts over the whole run.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["LearningSignal"]

log = logging.getLogger("rerec.rl")


class LearningSignal:
    """Counts RL steps without signal and warns after the first ``window`` steps when all were so.

    Args:
        window: How many first steps decide the warning.
    """

    def __init__(self, window: int = 3) -> None:
        self.window = window
        self.steps = 0
        self.uninformative_steps = 0  # no group with reward variance: zero advantages
        self.unparsable_steps = 0  # no rollout's answer parsed
        self.warning: str | None = None

    def record(self, metrics: dict[str, Any]) -> None:
        """One RL step's logged metrics (``frac_reward_zero_std``, ``completions/parse_rate``)."""
        self.steps += 1
        self.uninformative_steps += float(metrics.get("frac_reward_zero_std", 0.0)) >= 1.0
        self.unparsable_steps += float(metrics.get("completions/parse_rate", 1.0)) <= 0.0
        if self.steps == self.window and self.warning is None:
            self.warning = self._diagnose()
            if self.warning:
                log.warning("%s", self.warning)

    def _diagnose(self) -> str | None:
        n = self.steps
        if self.unparsable_steps == n:
            return (f"RL HAS NO SIGNAL: in the first {n} steps no rollout's answer parsed, so every reward is the "
                    "same penalty and every advantage, loss and gradient is zero. Check the answer format: what the "
                    "model writes (completions.jsonl) against what the prompt asks (prompt.format_example), "
                    "reward.answer_reading: lenient, or a format warm start (warm_start.steps, warm_start.target: answer).")
        if self.uninformative_steps == n:
            return (f"RL HAS NO SIGNAL: in the first {n} steps every group's rollouts got the same reward, so every "
                    "advantage, loss and gradient is zero. Check that answers differ in reward (completions.jsonl), "
                    "the sampling temperature, num_generations, and the warm start.")
        return None

    def summary(self) -> dict[str, Any]:
        """``summary.json``'s ``learning_signal`` (a run shorter than the window is judged on its steps)."""
        if self.warning is None and 0 < self.steps < self.window:
            self.warning = self._diagnose()
            if self.warning:
                log.warning("%s", self.warning)
        return {"steps": self.steps, "uninformative_steps": self.uninformative_steps,
                "unparsable_steps": self.unparsable_steps, "window": self.window, "warning": self.warning}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "uninformative_steps": self.uninformative_steps,
                "unparsable_steps": self.unparsable_steps, "window": self.window, "warning": self.warning}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state.get("steps", 0)
        self.uninformative_steps = state.get("uninformative_steps", 0)
        self.unparsable_steps = state.get("unparsable_steps", 0)
        self.warning = state.get("warning")
