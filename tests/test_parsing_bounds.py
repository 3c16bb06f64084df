"""Reading a completion is bounded by its length: hostile text (a policy can emit anything) parses, matches
and scores in well under 100 ms per 100k characters, and arbitrary text never breaks the parser, the title
matcher or the reward (property-based, hypothesis)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rerec.data.answer import MAX_ANSWER_CHARS, parse_answer
from rerec.data.matching import TitleMatcher
from rerec.data.records import Item, Query, QueryType, Triple
from rerec.data.tasks import RecTask
from rerec.graph.alignment import GraphRewardScorer
from rerec.rl.reward_components import FormatReward, NDCGReward, PASReward, QASReward
from rerec.rl.rewards import RecReward, RewardConfig

ITEMS = {
    1: Item(1, "Silent River, The (1975)"),
    2: Item(2, "Painted Mirror, The (1987)"),
    3: Item(3, "Golden Harbor (1990)"),
    4: Item(4, "Hollow Engine, A (2001)"),
}
TRIPLES = [Triple(1, "Genre", "War"), Triple(2, "Genre", "War"), Triple(3, "Genre", "Drama")]
EMBEDDINGS = {"item_ids": torch.tensor([1, 2, 3, 4]), "embeddings": torch.eye(4)}
PIECES = ["\\boxed{", "\\boxed", "{", "}", ";", "\\", " ", "\n", "x", "é", "(1990)", "Golden Harbor",
          "Silent River, The (1975)"]


def _mixed(n: int) -> str:
    rng = random.Random(0)
    out = "".join(rng.choice(PIECES) for _ in range(n // 4))
    return (out * (n // max(len(out), 1) + 1))[:n]


#: Shapes that make a naive scan quadratic (an unclosed box rescanned from every earlier "\boxed{").
HOSTILE: dict[str, Callable[[int], str]] = {
    "boxes never closed": lambda n: "\\boxed{" * (n // 7),
    "one box, braces never closed": lambda n: "\\boxed{" + "{" * n,
    "one box, balanced pairs inside, never closed": lambda n: "\\boxed{" + "{}" * (n // 2),
    "closing braces": lambda n: "\\boxed{" + "}" * n,
    "many small boxes": lambda n: "\\boxed{a}" * (n // 9),
    "one huge box": lambda n: "\\boxed{" + "a" * n + "}",
    "titles separated by semicolons": lambda n: "\\boxed{" + "Golden Harbor (1990);" * (n // 21) + "}",
    "mixed pieces": _mixed,
}


def _best_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _assert_linear(fn: Callable[[str], object], make: Callable[[int], str], what: str) -> None:
    """10k characters first (so a quadratic scan fails in about a second, not minutes), then 100k."""
    for n, limit in ((10_000, 0.02), (100_000, 0.1)):
        text = make(n)
        seconds = _best_seconds(lambda: fn(text))
        assert seconds < limit, f"{what}: {len(text)} characters took {seconds:.3f} s (limit {limit} s)"


@pytest.fixture(scope="module")
def matcher() -> TitleMatcher:
    return TitleMatcher(ITEMS.values(), cache_size=0)  # no cache: every call does the work


@pytest.fixture(scope="module")
def reward(matcher: TitleMatcher) -> RecReward:
    scorer = GraphRewardScorer.from_triples(TRIPLES, list(ITEMS), EMBEDDINGS)
    components = [FormatReward(), NDCGReward(), QASReward(0.01), PASReward(0.01)]
    for component in components:
        component.setup(None, scorer)
    return RecReward(RewardConfig(k=1), ITEMS, matcher, components)


def _task() -> RecTask:
    query = Query(query_id="q", domain="movie", query_type=QueryType.EXPLICIT, text="q", truth_item_ids=(3,))
    return RecTask(query, (3, 1, 2), 3)


@pytest.mark.parametrize("shape", HOSTILE)
def test_hostile_text_parses_in_linear_time(shape: str) -> None:
    _assert_linear(parse_answer, HOSTILE[shape], f"parse_answer on {shape!r}")
    _assert_linear(lambda t: parse_answer(t, max_titles=None), HOSTILE[shape], f"open-task parse on {shape!r}")


@pytest.mark.parametrize("shape", ["mixed pieces", "one huge box", "titles separated by semicolons"])
def test_hostile_titles_match_and_score_in_linear_time(shape: str, matcher: TitleMatcher, reward: RecReward) -> None:
    _assert_linear(matcher.match, HOSTILE[shape], f"TitleMatcher.match on {shape!r}")
    _assert_linear(lambda t: matcher.match_among(t, [1, 2, 3]), HOSTILE[shape], f"match_among on {shape!r}")
    _assert_linear(lambda t: reward([t], [_task()]), HOSTILE[shape], f"RecReward on {shape!r}")


TEXT = st.one_of(st.text(max_size=400), st.lists(st.sampled_from(PIECES), max_size=60).map("".join))
PLAIN_TITLE = st.text(alphabet=st.characters(blacklist_characters="{}\\", blacklist_categories=("Cs",)), max_size=80)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None)


@PROPERTY_SETTINGS
@given(text=TEXT, max_titles=st.sampled_from([1, 3, None]))
def test_parse_answer_on_any_text(text: str, max_titles: int | None) -> None:
    titles = parse_answer(text, max_titles=max_titles)
    if titles is None:
        return
    assert titles and all(t and t == t.strip() and t in text for t in titles)
    assert sum(map(len, titles)) <= MAX_ANSWER_CHARS
    if max_titles is not None:
        assert len(titles) <= max_titles


@PROPERTY_SETTINGS
@given(prefix=TEXT, title=PLAIN_TITLE)
def test_the_last_box_is_read_whatever_comes_before(prefix: str, title: str) -> None:
    expected = [title.strip()] if title.strip() else None
    assert parse_answer(prefix + "\\boxed{" + title + "}") == expected


@PROPERTY_SETTINGS
@given(text=TEXT)
def test_title_matcher_on_any_text(text: str, matcher: TitleMatcher) -> None:
    for match in (matcher.match(text), matcher.match_among(text, [1, 2, 3])):
        assert match.kind in ("exact", "normalized", "fuzzy", "none")
        assert (match.item_id is None) == (match.kind == "none")
        assert match.item_id is None or match.item_id in ITEMS


@PROPERTY_SETTINGS
@given(texts=st.lists(TEXT, min_size=1, max_size=4))
def test_reward_on_any_text_is_finite(texts: list[str], reward: RecReward) -> None:
    scored = reward(texts, [_task()] * len(texts))
    assert scored.total.shape == (len(texts),) and bool(scored.total.isfinite().all())
    assert all(bool(v.isfinite().all()) for v in scored.components.values())
    assert scored.parsed == [parse_answer(t) for t in texts]
