"""Answer reading on what a real instruct model writes: six greedy zero-shot completions of
SmolLM2-135M-Instruct on real RecBench+ demographics prompts (``fixtures/smollm2_zero_shot_completions.json``,
recorded with the candidate prompt and its format example). The model answers with a list of candidate
titles, never a box: strict reading gives RL nothing, lenient reading scores the first listed title,
and the format reward stays for the box the prompt asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerec.data.answer import parse_list_answer, read_answer

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_zero_shot_completions.json"
COMPLETIONS = json.loads(FIXTURE.read_text())["completions"]
# What a reader would take as each answer's recommendation (checked by hand against the completions).
FIRST_TITLES = [
    None,  # one sentence naming the prompt's format example, not a list
    "Idle Hands (1999)", "Curtis's Charm (1995)", "Paris, Texas (1984)", "Plan 9 from Outer Space (1958)",
    "The Band Played On (1993)",
]


def test_the_fixture_is_what_the_model_wrote() -> None:
    assert len(COMPLETIONS) == len(FIRST_TITLES) == 6
    assert all("\\boxed" not in r["completion"] for r in COMPLETIONS)
    assert sum(r["completion"].lstrip().startswith("- ") for r in COMPLETIONS) == 5


def test_strict_reading_parses_none_of_them() -> None:
    assert [read_answer(r["completion"], 1, "boxed", "strict") for r in COMPLETIONS] == [(None, False)] * 6


@pytest.mark.parametrize("i", range(1, 6))
def test_lenient_reading_takes_the_first_listed_title(i: int) -> None:
    titles, as_asked = read_answer(COMPLETIONS[i]["completion"], 1, "boxed", "lenient")
    assert titles == [FIRST_TITLES[i]] and as_asked is False


def test_list_reading_keeps_the_order_and_cuts_each_title_after_its_year() -> None:
    titles = parse_list_answer(COMPLETIONS[3]["completion"])
    assert titles[:4] == ["Paris, Texas (1984)", "Puppet Master III: Toulon's Revenge (1991)",
                          "X-Files: Fight the Future, The (1998)", "Touch (1997)"]
    assert parse_list_answer("1. **Heat (1995)** - a heist film\n2) \"Casino (1995)\"") == ["Heat (1995)", "Casino (1995)"]
    assert parse_list_answer("Heat (1995)\nCasino (1995)\n") == ["Heat (1995)", "Casino (1995)"]  # one per line
    assert parse_list_answer("I think you would like a thriller.") is None


def test_a_box_is_read_as_asked_and_wins_over_a_list() -> None:
    text = COMPLETIONS[1]["completion"] + "\n\\boxed{She-Devil (1989)}"
    assert read_answer(text, 1, "boxed", "lenient") == (["She-Devil (1989)"], True)
    assert read_answer(text, 1, "boxed", "strict") == (["She-Devil (1989)"], True)


@pytest.fixture(scope="module")
def real_data(recbench_dir: Path):
    from rerec.data.datamodule import RecDataModule
    from rerec.data.prompts import PromptConfig

    # The recipe's split settings: the fixture's query ids are training queries of this split.
    return RecDataModule(root=str(recbench_dir), query_types=["demographics"], test_fraction=0.15, val_fraction=0.25,
                         prompt=PromptConfig(format_example="Heat (1995)")).load()


def test_lenient_reward_scores_the_recommendation_and_keeps_the_format_reward_for_the_box(real_data) -> None:
    from rerec.rl.reward_components import FormatReward, NDCGReward
    from rerec.rl.rewards import RecReward, RewardConfig

    tasks = {t.query_id: t for t in real_data.tasks["train"]}
    rows = [r for r in COMPLETIONS[1:]]
    batch_tasks = [tasks[r["query_id"]] for r in rows]
    truth = [real_data.items[t.target_id].title for t in batch_tasks]
    texts = [r["completion"] for r in rows] + [f"\\boxed{{{truth[0]}}}"]
    batch_tasks.append(batch_tasks[0])
    components = [FormatReward(weight=1.0), NDCGReward(weight=1.0)]
    strict = RecReward.for_data(RewardConfig(k=1), real_data, components)(texts, batch_tasks)
    lenient = RecReward.for_data(RewardConfig(k=1, answer_reading="lenient"), real_data, components)(texts, batch_tasks)
    assert strict.parsed[:5] == [None] * 5 and strict.as_asked[:5] == [False] * 5
    assert len(set(strict.total[:5].tolist())) == 1  # every list answer the same penalty: no signal
    assert lenient.parsed[:5] == [[t] for t in FIRST_TITLES[1:]]
    assert lenient.as_asked == [False] * 5 + [True]
    fmt = lenient.components["format"].tolist()
    assert fmt[:5] == [-0.5] * 5 and fmt[5] == 0.5  # the format reward only for the box
    ndcg = lenient.components["ndcg"].tolist()
    for title, want, value in zip(FIRST_TITLES[1:], truth, ndcg[:5]):
        assert value == (1.0 if title == want else 0.0)
    assert ndcg[5] == 1.0 and strict.components["ndcg"][5] == 1.0
