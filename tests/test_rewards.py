"""The named-component reward (``rerec.rl.rewards``) against hand-computed totals (DESIGN §1.1 defaults)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from rerec.data.matching import TitleMatcher
from rerec.data.records import Item, Query, QueryType, Triple
from rerec.data.tasks import RecTask
from rerec.graph.alignment import GraphRewardScorer
from rerec.rl.reward_components import FormatReward, NDCGReward, PASReward, QASReward, default_reward_components
from rerec.rl.rewards import RecReward, RewardConfig

ITEMS = {
    1: Item(1, "Silent River, The (1975)"),
    2: Item(2, "Painted Mirror, The (1987)"),
    3: Item(3, "Golden Harbor (1990)"),
    4: Item(4, "Hollow Engine, A (2001)"),
    5: Item(5, "Burning Canyon (1966)"),
}
# 1: War, Tom, Spielberg | 2: War, Tom | 3: Drama, Tom | 4: Comedy | 5: not in the graph
TRIPLES = [
    Triple(1, "Genre", "War"), Triple(1, "Starring", "Tom"), Triple(1, "Directed_by", "Spielberg"),
    Triple(2, "Genre", "War"), Triple(2, "Starring", "Tom"),
    Triple(3, "Genre", "Drama"), Triple(3, "Starring", "Tom"),
    Triple(4, "Genre", "Comedy"),
]
# cos(1,2) = 1/sqrt(2), cos(1,3) = 0, cos(1,4) = -1
EMBEDDINGS = {
    "item_ids": torch.tensor([1, 2, 3, 4]),
    "embeddings": torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-3.0, 0.0]]),
}
NO_GRAPH = dict(w_qas=0.0, w_pas=0.0)


def _task(truth: tuple[int, ...], candidates: tuple[int, ...] = (3, 1, 2)) -> RecTask:
    """A candidate task (target = first truth) or, with no candidates, an open task."""
    q = Query(query_id="q", domain="movie", query_type=QueryType.EXPLICIT, text="q", truth_item_ids=truth)
    return RecTask(q, candidates, truth[0] if candidates else -1)


@pytest.fixture(scope="module")
def matcher() -> TitleMatcher:
    return TitleMatcher(ITEMS.values())


@pytest.fixture(scope="module")
def scorer() -> GraphRewardScorer:
    return GraphRewardScorer.from_triples(TRIPLES, list(ITEMS), EMBEDDINGS)


def _reward(matcher: TitleMatcher, scorer: GraphRewardScorer | None = None, *, items=ITEMS, k: int = 1,
            require_candidate: bool = False, w_qas: float = 0.01, w_pas: float = 0.01,
            max_titles: int = 1) -> RecReward:
    """The reward with the reference components (format 0.1, NDCG 1.0) and the given graph weights."""
    components = [FormatReward(), NDCGReward(), QASReward(w_qas), PASReward(w_pas)]
    for c in components:
        if c.weight:
            c.setup(None, scorer)
    return RecReward(RewardConfig(k=k, require_candidate=require_candidate), items, matcher, components, max_titles)


def test_defaults_are_design_values() -> None:
    cfg = RewardConfig()
    assert cfg.k == 1 and not cfg.require_candidate  # the paper's reward; configs/tiny.yaml turns it on
    fmt, ndcg, qas, pas = default_reward_components()
    assert [c.name for c in (fmt, ndcg, qas, pas)] == ["format", "ndcg", "qas", "pas"]
    assert (fmt.weight, ndcg.weight, qas.weight, pas.weight) == (0.1, 1.0, 0.01, 0.01)
    assert (fmt.format_reward, fmt.unparsable_penalty, ndcg.unparsable_penalty) == (0.5, -0.5, -0.5)


def test_graph_components_without_scorer_raise() -> None:
    for component in (QASReward(), PASReward()):
        with pytest.raises(ValueError, match="graph scorer"):
            component.setup(None, None)


def test_component_names_are_distinct(matcher: TitleMatcher) -> None:
    with pytest.raises(ValueError, match="distinct names"):
        RecReward(RewardConfig(), ITEMS, matcher, [NDCGReward(), NDCGReward(0.5)])


def test_user_component_is_weighted_and_logged_by_name(matcher: TitleMatcher) -> None:
    """A component from outside the package: its raw value under its own name, weight × value in the total."""
    from _user_plugins import AnswerLengthPenalty

    reward = RecReward(RewardConfig(), ITEMS, matcher, [NDCGReward(), AnswerLengthPenalty(weight=0.5, per_char=0.01)])
    texts = ["\\boxed{Silent River, The (1975)}", "no answer at all"]
    out = reward(texts, [_task((1,))] * 2)
    lengths = torch.tensor([float(len(t)) for t in texts])
    torch.testing.assert_close(out.components["answer_length"], -0.01 * lengths)
    torch.testing.assert_close(out.total, torch.tensor([1.0, -0.5]) + 0.5 * (-0.01 * lengths))
    # the curriculum's NDCG does not depend on which components are configured
    torch.testing.assert_close(out.ndcg, torch.tensor([1.0, 0.0]))


def test_candidate_task_totals_without_graph(matcher: TitleMatcher) -> None:
    reward = _reward(matcher, require_candidate=True, **NO_GRAPH)
    task = _task((1,))
    texts = [
        "director Spielberg: Silent River, The (1975).\n\\boxed{Silent River, The (1975)}",  # correct
        "\\boxed{Golden Harbor (1990)}",  # wrong, a candidate
        "I think it is Silent River.",  # no box
        "\\boxed{Silent River, The (1975); Golden Harbor (1990)}",  # a hedge: one title matching nothing
        "\\boxed{The Silent River (1975)}",  # right item, natural order: through the catalog matcher
        "\\boxed{Some Film Nobody Made (2020)}",  # parsable, matches nothing
    ]
    out = reward(texts, [task] * len(texts))
    # correct: 0.1*0.5 + 1.0*1 = 1.05; wrong candidate: 0.05; unparsable, or (require_candidate) naming no
    # candidate: 0.1*(-0.5) + 1.0*(-0.5) = -0.55
    torch.testing.assert_close(out.total, torch.tensor([1.05, 0.05, -0.55, -0.55, 1.05, -0.55]))
    torch.testing.assert_close(out.components["format"], torch.tensor([0.5, 0.5, -0.5, -0.5, 0.5, -0.5]))
    torch.testing.assert_close(out.components["ndcg"], torch.tensor([1.0, 0.0, -0.5, -0.5, 1.0, -0.5]))
    assert out.off_candidate == [False, False, False, True, False, True]  # unparsable is not "off"
    assert set(out.components) == {"format", "ndcg"}  # weight 0: not computed
    assert out.parsed == [
        ["Silent River, The (1975)"], ["Golden Harbor (1990)"], None,
        ["Silent River, The (1975); Golden Harbor (1990)"],
        ["The Silent River (1975)"], ["Some Film Nobody Made (2020)"],
    ]
    assert out.predicted_ids == [[1], [3], [], [-1], [1], [-1]]
    assert out.match_kinds == [["candidate"], ["candidate"], [], ["none"], ["normalized"], ["none"]]
    assert out.correct == [True, False, False, False, True, False]
    assert out.wrong_titles == [
        [], ["Golden Harbor (1990)"], [], ["Silent River, The (1975); Golden Harbor (1990)"], [],
        ["Some Film Nobody Made (2020)"],
    ]


def test_title_outside_the_candidates_goes_through_the_matcher(matcher: TitleMatcher) -> None:
    reward = _reward(matcher, require_candidate=True, **NO_GRAPH)
    # item 4 is in the catalog but not a candidate of this task: exact catalog match, still wrong
    texts = ["\\boxed{Hollow Engine, A (2001)}", "\\boxed{Golden Harbour (1990)}"]
    out = reward(texts, [_task((1,))] * 2)
    assert out.predicted_ids == [[4], [3]] and out.match_kinds == [["exact"], ["fuzzy"]]
    assert out.off_candidate == [True, False]  # a fuzzy match of a candidate's title is that candidate
    torch.testing.assert_close(out.total, torch.tensor([-0.55, 0.05]))
    # require_candidate off: an off-list catalog title is just a wrong answer
    lenient = _reward(matcher, **NO_GRAPH)
    torch.testing.assert_close(lenient(texts, [_task((1,))] * 2).total, torch.tensor([0.05, 0.05]))


def test_a_remake_title_names_the_listed_version() -> None:
    items = {10: Item(10, "Hamlet (1990)"), 11: Item(11, "Hamlet (1996)"), 12: Item(12, "Golden Harbor (1990)")}
    reward = _reward(TitleMatcher(items.values()), items=items, require_candidate=True, **NO_GRAPH)
    task = _task((11,), candidates=(12, 11))
    texts = ["\\boxed{Hamlet}", "\\boxed{Hamlett (1996)}", "\\boxed{Hamlet (1990)}", "\\boxed{Golden Harbour}"]
    out = reward(texts, [task] * 4)
    # no year: the catalog alone would pick 10 (catalog order); the listed 11 is what the answer names.
    # An exact catalog title (1990) is taken at its word: off-list. A typo of a candidate stays that candidate.
    assert out.predicted_ids == [[11], [11], [10], [12]]
    assert out.off_candidate == [False, False, True, False]
    torch.testing.assert_close(out.total, torch.tensor([1.05, 1.05, -0.55, 0.05]))
    assert TitleMatcher(items.values()).match("Hamlet").item_id == 10  # what the rescue corrects


def test_open_task_ndcg_at_k(matcher: TitleMatcher) -> None:
    reward = _reward(matcher, k=3, max_titles=3, **NO_GRAPH)
    task = _task((1, 4), candidates=())
    texts = [
        # hits at ranks 1 and 3: (1 + 1/log2 4) / (1 + 1/log2 3)
        "\\boxed{Silent River, The (1975); Golden Harbor (1990); A Hollow Engine (2001)}",
        # hit at rank 2 only: (1/log2 3) / (1 + 1/log2 3)
        "\\boxed{Golden Harbor (1990); Hollow Engine, A (2001)}",
        # both hits first, a 4th title beyond K is dropped
        "\\boxed{Hollow Engine, A (2001); Silent River, The (1975); Golden Harbor (1990); Burning Canyon (1966)}",
        "\\boxed{}",
    ]
    out = reward(texts, [task] * len(texts))
    ideal = 1 + 1 / math.log2(3)
    ndcg = [(1 + 1 / math.log2(4)) / ideal, (1 / math.log2(3)) / ideal, 1.0, -0.5]
    torch.testing.assert_close(out.components["ndcg"], torch.tensor(ndcg))
    torch.testing.assert_close(out.total, torch.tensor([0.05 + ndcg[0], 0.05 + ndcg[1], 1.05, -0.55]))
    assert out.predicted_ids[0] == [1, 3, 4] and out.match_kinds[0] == ["exact", "exact", "normalized"]
    assert len(out.parsed[2]) == 3 and out.correct == [True, False, True, False]
    assert out.wrong_titles[:3] == [["Golden Harbor (1990)"], ["Golden Harbor (1990)"], ["Golden Harbor (1990)"]]


def test_graph_components_hand_computed(matcher: TitleMatcher, scorer: GraphRewardScorer) -> None:
    # DESIGN defaults (w_qas = w_pas = 0.01, require_candidate off): items 4 and 5 are not among the
    # candidates (3, 1, 2) and are scored as plain wrong answers, with graph credit
    reward = _reward(matcher, scorer)
    task = _task((1,))
    texts = [
        "\\boxed{Silent River, The (1975)}",  # = truth: QAS 1, PAS 1
        "\\boxed{Painted Mirror, The (1987)}",  # shares War, Tom of {War, Tom, Spielberg}: 2/3; cos 1/sqrt2
        "\\boxed{Golden Harbor (1990)}",  # shares Tom: 1/3; cos 0
        "\\boxed{Hollow Engine, A (2001)}",  # shares nothing: 0; cos -1
        "\\boxed{Burning Canyon (1966)}",  # not in the graph, no embedding: 0, 0
        "no answer",  # unparsable: 0, 0
    ]
    out = reward(texts, [task] * len(texts))
    qas = [1.0, 2 / 3, 1 / 3, 0.0, 0.0, 0.0]
    pas = [1.0, 1 / math.sqrt(2), 0.0, -1.0, 0.0, 0.0]
    torch.testing.assert_close(out.components["qas"], torch.tensor(qas))
    torch.testing.assert_close(out.components["pas"], torch.tensor(pas))
    base = [1.05, 0.05, 0.05, 0.05, 0.05, -0.55]
    expected = [b + 0.01 * q + 0.01 * p for b, q, p in zip(base, qas, pas)]
    torch.testing.assert_close(out.total, torch.tensor(expected))
    assert out.total[0].item() == pytest.approx(1.07)
    assert out.total[1].item() == pytest.approx(0.05 + 0.01 * 2 / 3 + 0.01 / math.sqrt(2))


def test_off_candidate_answers_get_no_graph_credit(matcher: TitleMatcher, scorer: GraphRewardScorer) -> None:
    reward = _reward(matcher, scorer, require_candidate=True)
    texts = ["\\boxed{Painted Mirror, The (1987)}", "\\boxed{Hollow Engine, A (2001)}", "\\boxed{Golden Harbor (1990)}"]
    out = reward(texts, [_task((1,), candidates=(1, 3, 5))] * 3)  # item 2 is similar to the truth, not listed
    torch.testing.assert_close(out.components["qas"], torch.tensor([0.0, 0.0, 1 / 3]))
    torch.testing.assert_close(out.components["pas"], torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(out.total, torch.tensor([-0.55, -0.55, 0.05 + 0.01 / 3]))
    assert out.off_candidate == [True, True, False] and out.predicted_ids == [[2], [4], [3]]


def test_graph_components_several_truths_and_open_task_mean(
    matcher: TitleMatcher, scorer: GraphRewardScorer
) -> None:
    # truths {1, 2}: A(g) = {War, Tom}; QAS(3) = 1/2, QAS(4) = 0. PAS = max cosine over the truths.
    reward = _reward(matcher, scorer, w_pas=0.0)
    out = reward(["\\boxed{Golden Harbor (1990)}"], [_task((1, 2))])
    torch.testing.assert_close(out.components["qas"], torch.tensor([0.5]))
    assert "pas" not in out.components
    torch.testing.assert_close(out.total, torch.tensor([0.05 + 0.01 * 0.5]))
    # open task, K=2: QAS is the mean over the first K predictions, (2/3 + 1/3) / 2 = 0.5
    reward = _reward(matcher, scorer, k=2, w_pas=0.0, max_titles=2)
    out = reward(
        ["\\boxed{Painted Mirror, The (1987); Golden Harbor (1990); Silent River, The (1975)}",
         "\\boxed{Painted Mirror, The (1987); Nowhere (1900)}"],
        [_task((1,), candidates=())] * 2,
    )
    torch.testing.assert_close(out.components["qas"], torch.tensor([0.5, 1 / 3]))  # unmatched counts as 0
    torch.testing.assert_close(out.components["ndcg"], torch.tensor([0.0, 0.0]))


def test_pas_disabled_scorer_gives_zero_pas(matcher: TitleMatcher) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "PAS disabled" is expected here
        no_pas = GraphRewardScorer.from_triples(TRIPLES, list(ITEMS), None)
    reward = _reward(matcher, no_pas)
    out = reward(["\\boxed{Painted Mirror, The (1987)}"], [_task((1,))])
    torch.testing.assert_close(out.components["pas"], torch.tensor([0.0]))
    torch.testing.assert_close(out.total, torch.tensor([0.05 + 0.01 * 2 / 3]))


def test_graph_scores_stay_float32_when_the_default_dtype_is_bf16(matcher: TitleMatcher, scorer: GraphRewardScorer) -> None:
    # what precision="bf16-true" sets around a training step: the score sums were made in bf16, and
    # adding the scorer's float32 output to them failed ("index_add_(): self (BFloat16) and source (Float)")
    texts = ["\\boxed{Painted Mirror, The (1987)}", "no answer"]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        out = _reward(matcher, scorer)(texts, [_task((1,))] * len(texts))
    finally:
        torch.set_default_dtype(previous)
    assert {out.components["qas"].dtype, out.components["pas"].dtype} == {torch.float32}
    assert out.components["qas"].tolist() == pytest.approx([2 / 3, 0.0], abs=1e-7)  # bf16: 0.66796875
