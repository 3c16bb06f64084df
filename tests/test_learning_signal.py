"""The warning of a run in which RL cannot learn (every reward equal, or no answer parsed)."""

from __future__ import annotations

import logging

import pytest

from rerec.rl.learning_signal import LearningSignal
from rerec.rl.run_stats import RunStats

DEAD = {"frac_reward_zero_std": 1.0, "completions/parse_rate": 0.0}
FLAT = {"frac_reward_zero_std": 1.0, "completions/parse_rate": 0.75}
LIVE = {"frac_reward_zero_std": 0.5, "completions/parse_rate": 0.75}


def test_no_parsable_answer_in_the_first_steps_warns_once_about_the_format(caplog: pytest.LogCaptureFixture) -> None:
    signal = LearningSignal(window=3)
    with caplog.at_level(logging.WARNING, logger="rerec"):
        for _ in range(5):
            signal.record(DEAD)
    assert signal.warning and "no rollout's answer parsed" in signal.warning and "answer_reading" in signal.warning
    assert sum("RL HAS NO SIGNAL" in r.message for r in caplog.records) == 1
    assert signal.summary()["unparsable_steps"] == 5


def test_equal_rewards_warn_about_the_groups() -> None:
    signal = LearningSignal(window=2)
    signal.record(FLAT)
    signal.record(FLAT)
    assert signal.warning and "same reward" in signal.warning


@pytest.mark.parametrize("steps", [[DEAD, DEAD, LIVE], [LIVE, DEAD, DEAD], [FLAT, LIVE, FLAT]])
def test_one_informative_step_in_the_window_is_enough(steps: list[dict]) -> None:
    signal = LearningSignal(window=3)
    for metrics in steps:
        signal.record(metrics)
    assert signal.warning is None
    for _ in range(5):  # later dead steps are a run that stopped learning, not one that never could
        signal.record(DEAD)
    assert signal.warning is None


def test_a_run_shorter_than_the_window_is_judged_on_its_steps() -> None:
    signal = LearningSignal(window=3)
    signal.record(DEAD)
    assert signal.warning is None
    assert "RL HAS NO SIGNAL" in signal.summary()["warning"]


def test_run_stats_carry_it_into_the_summary_and_across_a_resume() -> None:
    stats = RunStats()
    stats.begin_segment("runs/x")
    stats.record_step({"generate": 1.0, "score": 1.0, "update": 1.0}, 10, dict(DEAD))
    resumed = RunStats()
    resumed.load_state_dict(stats.state_dict())
    for _ in range(2):
        resumed.record_step({"generate": 1.0, "score": 1.0, "update": 1.0}, 10, dict(DEAD))
    assert resumed.signal.steps == 3 and resumed.signal.warning
    assert resumed.summary("completed")["learning_signal"]["warning"] == resumed.signal.warning
