"""The ``[SEP]`` answer format: parsing, the open-task prompt that asks for it, and the reward reading it."""

from __future__ import annotations

import pytest

from rerec.data.answer import MAX_ANSWER_CHARS, parse_answer, parse_sep_answer
from rerec.data.contract import RecData
from rerec.data.matching import TitleMatcher
from rerec.data.prompts import BOXED_SYSTEM_PROMPT, SEP_SYSTEM_PROMPT, PromptConfig, build_messages
from rerec.data.records import Item, Query, QueryType
from rerec.data.tasks import RecTask
from rerec.rl.rewards import RecReward, RewardConfig

ITEMS = {1: Item(1, "Heat (1995)"), 2: Item(2, "Casino (1995)"), 3: Item(3, "Clerks (1994)")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Heat (1995) [SEP] Casino (1995)", ["Heat (1995)", "Casino (1995)"]),
        ('"Heat (1995)"[SEP] \u201cCasino\u201d [SEP] \'Clerks\'', ["Heat (1995)", "Casino", "Clerks"]),
        ("Heat [SEP] [SEP]  [SEP] Casino [SEP]", ["Heat", "Casino"]),  # empty parts dropped
        ("Reasoning line.\nMore reasoning.\n\nHeat [SEP] Casino\nEnjoy!", ["Heat", "Casino"]),
        ("Heat\n[SEP] Casino [SEP]\nClerks", ["Heat", "Casino", "Clerks"]),  # one title per line
        ("Heat [SEP] Casino [SEP]\nEnjoy!", ["Heat", "Casino", "Enjoy!"]),  # after a trailing [SEP]: a title
        ("Heat (1995)", ["Heat (1995)"]),  # one line, no [SEP]: a list of one
        ("  Heat (1995)  \n\n", ["Heat (1995)"]),
        ("Here you go:\n- Heat\n- Casino", None),  # several lines, no [SEP]: not a list
        ("", None),
        (" [SEP] \n", None),
        ("\\boxed{Heat; Casino}", ["\\boxed{Heat; Casino}"]),  # the box means nothing in this format
    ],
)
def test_parse_sep_answer(text: str, expected: list[str] | None) -> None:
    assert parse_sep_answer(text) == expected
    assert parse_answer(text, max_titles=None, answer_format="sep") == expected


def test_sep_answer_cut_off_and_junk() -> None:
    assert parse_sep_answer("A [SEP] B [SEP] C", max_titles=2) == ["A", "B"]
    assert parse_answer("A [SEP] B [SEP] C", max_titles=1, answer_format="sep") == ["A"]
    assert parse_sep_answer(" [SEP] ".join(["x" * 100] * (MAX_ANSWER_CHARS // 100 + 1))) is None
    with pytest.raises(ValueError, match="answer_format"):
        parse_answer("A", answer_format="json")  # type: ignore[arg-type]


def test_boxed_format_is_unchanged_by_default() -> None:
    assert parse_answer("\\boxed{Heat; Casino}", max_titles=None) == ["Heat", "Casino"]
    assert parse_answer("Heat [SEP] Casino", max_titles=None) is None


def test_open_task_prompt_asks_for_sep_lists() -> None:
    task = RecTask(Query("q", "movie", QueryType.DEMOGRAPHICS, "Crime films?"))
    sep = PromptConfig(answer_format="sep", open_k=5)
    system, user = build_messages(task, ITEMS, {}, sep)
    assert system["content"] == SEP_SYSTEM_PROMPT and "[SEP]" in system["content"]
    assert user["content"].endswith(
        "Recommend up to 5 films. Answer with their titles only, separated by [SEP], "
        "e.g. Title A (1999) [SEP] Title B (2004).")
    assert PromptConfig(answer_format="sep", system_prompt="Mine.").system_prompt == "Mine."
    boxed_system, boxed_user = build_messages(task, ITEMS, {}, PromptConfig())
    assert boxed_system["content"] == BOXED_SYSTEM_PROMPT and "\\boxed{}" in boxed_user["content"]
    with pytest.raises(ValueError, match="answer_format"):
        PromptConfig(answer_format="xml")  # type: ignore[arg-type]


def _data(task: str, answer_format: str) -> RecData:
    prompt = PromptConfig(answer_format=answer_format, open_k=2)  # type: ignore[arg-type]
    matcher = TitleMatcher({i: it.title for i, it in ITEMS.items()})
    return RecData(items=ITEMS, attributes={}, triples=[], interactions=None, matcher=matcher, tasks={},
                   warm_start_tasks=[], prompt=prompt, task=task, eval_batch_size=1,  # type: ignore[arg-type]
                   fingerprint="f")


def test_the_reward_reads_the_format_the_prompt_asks_for() -> None:
    task = RecTask(Query("q", "movie", QueryType.DEMOGRAPHICS, "Crime films?", truth_item_ids=(1, 2)))
    data = _data("open", "sep")
    assert (data.answer_format, data.titles_per_answer) == ("sep", 2)
    assert _data("candidate", "sep").answer_format == "boxed"  # the candidate task always boxes
    reward = RecReward.for_data(RewardConfig(k=2), data)
    read = reward.read(["Thinking.\nCasino (1995) [SEP] Heat (1995) [SEP] Clerks (1994)",
                        "Thinking.\n\\boxed{Heat; Casino}"], [task, task])
    assert read.parsed == [["Casino (1995)", "Heat (1995)"], None]
    assert read.predicted_ids == [[2, 1], []] and read.scorable == [True, False]
    boxed = RecReward.for_data(RewardConfig(k=2), _data("open", "boxed"))
    assert boxed.read(["\\boxed{Heat; Casino}"], [task]).predicted_ids == [[1, 2]]
    with pytest.raises(ValueError, match="answer_format"):
        RecReward(RewardConfig(), ITEMS, data.matcher, answer_format="xml")  # type: ignore[arg-type]
