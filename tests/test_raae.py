"""RAAE with hand-written completions and a real tiny tokenizer; the KG fact checker."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from _tiny_tokenizer import tiny_tokenizer
from rerec.data.answer import parse_answer
from rerec.data.records import Triple
from rerec.rl.advantages import AdvantageInputs
from rerec.rl.raae import RAAEAdvantage
from rerec.rl.raae.kg_verify import FactChecker
from rerec.rl.raae.token_spans import TokenSpanError

EPS = 1e-4
W = 0.3


@dataclass
class Rollout:
    """A completion written as pieces; ``weight`` = penalty expected on the tokens of that piece."""

    pieces: list[tuple[str, float]]
    reward: float
    truth: str | None = None  # None: nothing is wrong (keeps wrong_titles empty)
    max_titles: int | None = 1
    lead: int = 0  # masked columns before the completion (prompt positions)
    byte_tokens: list[str] | None = None  # explicit tokens instead of encoding the pieces


def _batch(rollouts: list[Rollout], group_size: int, extra_pad: int = 2, **kw):
    tok = tiny_tokenizer()
    rows, expected_w, texts, recommended, wrong = [], [], [], [], []
    for ro in rollouts:
        ids, weights = [], []
        for text, weight in ro.pieces:
            piece = tok.encode(text, add_special_tokens=False)
            ids += piece
            weights += [weight] * len(piece)
        ids.append(tok.eos_token_id)
        weights.append(0.0)
        rows.append(ids)
        expected_w.append(weights)
        text = tok.decode(ids, skip_special_tokens=True)
        assert text == "".join(t for t, _ in ro.pieces)
        texts.append(text)
        titles = parse_answer(text, max_titles=ro.max_titles)
        recommended.append(titles)
        wrong.append([t for t in titles if t != ro.truth] if titles is not None and ro.truth is not None else [])
    t = max(len(r) + ro.lead for r, ro in zip(rows, rollouts)) + extra_pad
    ids = torch.full((len(rows), t), tok.pad_token_id)
    mask = torch.zeros(len(rows), t, dtype=torch.bool)
    for i, (r, ro) in enumerate(zip(rows, rollouts)):
        ids[i, ro.lead : ro.lead + len(r)] = torch.tensor(r)
        mask[i, ro.lead : ro.lead + len(r)] = True
    inputs = AdvantageInputs(
        rewards=torch.tensor([ro.reward for ro in rollouts]),
        group_size=group_size,
        completion_ids=ids,
        completion_mask=mask,
        completion_texts=texts,
        recommended_titles=recommended,
        wrong_titles=wrong,
        tokenizer=tok,
        **kw,
    )
    return inputs, expected_w


def _expected(rollouts, expected_w, floor=1e-3):
    return [
        [ro.reward - w * max(abs(ro.reward), floor) for w in ws] for ro, ws in zip(rollouts, expected_w)
    ]


def _valid(tensor: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    return [tensor[i][mask[i]].tolist() for i in range(tensor.shape[0])]


def _group() -> list[Rollout]:
    return [
        Rollout(  # wrong: only the line arguing for "se7en" is penalised; the answer line is not
            [("Needs: director Ann Lee.", 0), ("\n", 0), ("se7en (1995): director Ann Lee.", W), ("\n", 0),
             ("Silent River (1987): genre Drama.", 0), ("\n", 0), ("\\boxed{Se7en (1995)}", 0)],
            reward=0.06, truth="Silent River (1987)",
        ),
        Rollout(  # correct: mentions of another title change nothing
            [("Silent River (1987): director Ann Lee.", 0), ("\n", 0), ("Se7en (1995) was tempting.", 0),
             ("\n", 0), ("\\boxed{Silent River (1987)}", 0)],
            reward=1.05, truth="Silent River (1987)",
        ),
        Rollout([("I am not sure about Se7en.", 0)], reward=-0.1, truth="Silent River (1987)"),  # unparsable
    ]


def test_token_rewards_and_advantages_by_hand() -> None:
    rollouts = _group()
    inputs, expected_w = _batch(rollouts, group_size=3)
    out = RAAEAdvantage(w_penalty=W)(inputs)
    mask = inputs.completion_mask
    want = _expected(rollouts, expected_w)
    assert {round(x, 6) for x in want[0]} == {0.06, 0.042}  # (1 - 0.3) * 0.06 on the penalised line
    assert all(x == 1.05 for x in want[1]) and all(x == -0.1 for x in want[2])
    got = _valid(out.token_rewards, mask)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-6)
    flat = [x for row in want for x in row]
    mean, std = statistics.fmean(flat), statistics.stdev(flat)  # unbiased, over the group's valid tokens
    for g, w in zip(_valid(out.advantages, mask), want):
        assert g == pytest.approx([(x - mean) / (std + EPS) for x in w], abs=1e-5)
    # Padding is 0 in both outputs.
    assert not out.advantages[~mask].any() and not out.token_rewards[~mask].any()
    penalised_tokens = sum(w > 0 for w in expected_w[0])
    assert out.metrics["raae/penalized_segment_frac"] == pytest.approx(1 / 3)  # 1 of row 0's 3 segments
    assert out.metrics["raae/penalized_token_frac"] == pytest.approx(penalised_tokens / int(mask.sum()))
    assert out.metrics["raae/wrong_answer_frac"] == pytest.approx(1 / 3)
    assert out.metrics["raae/skipped_rollouts"] == 0.0
    assert "raae/kg_contradictions" not in out.metrics


def test_groups_are_normalised_separately_and_a_constant_group_gives_zeros() -> None:
    same = [Rollout([("Silent River (1987) fits.\n\\boxed{Silent River (1987)}", 0)], 1.05, "Silent River (1987)")] * 3
    rollouts = _group() + same
    inputs, expected_w = _batch(rollouts, group_size=3)
    out = RAAEAdvantage()(inputs)
    alone = RAAEAdvantage()(_batch(_group(), group_size=3)[0])
    t = alone.advantages.shape[1]
    assert torch.allclose(out.advantages[:3, :t], alone.advantages)
    assert torch.equal(out.advantages[3:], torch.zeros_like(out.advantages[3:]))


def test_scale_rewards_false_is_mean_centred() -> None:
    rollouts = _group()
    inputs, expected_w = _batch(rollouts, group_size=3)
    out = RAAEAdvantage(scale_rewards=False)(inputs)
    want = _expected(rollouts, expected_w)
    mean = statistics.fmean(x for row in want for x in row)
    for g, w in zip(_valid(out.advantages, inputs.completion_mask), want):
        assert g == pytest.approx([x - mean for x in w], abs=1e-6)


@pytest.mark.parametrize(("reward", "floor", "penalised"), [(0.5, 1e-3, 0.35), (-0.2, 1e-3, -0.26),
                                                             (0.0, 1e-3, -0.0003), (0.0, 0.0, 0.0)])
def test_penalty_sign_rule(reward: float, floor: float, penalised: float) -> None:
    # r - w * max(|r|, floor): (1 - w) r for r > 0, (1 + w) r for r < 0 — always below r unless floor = 0.
    rollouts = [
        Rollout([("Se7en (1995) it is.", W), ("\n", 0), ("Other line.", 0), ("\n\\boxed{Se7en (1995)}", 0)],
                reward, truth="Alien (1979)"),
        Rollout([("Alien (1979).\n\\boxed{Alien (1979)}", 0)], 1.0, truth="Alien (1979)"),
    ]
    inputs, expected_w = _batch(rollouts, group_size=2)
    out = RAAEAdvantage(w_penalty=W, penalty_floor=floor)(inputs)
    row = _valid(out.token_rewards, inputs.completion_mask)[0]
    values = {round(x, 7) for x in row}
    assert values == ({reward, penalised} if penalised != reward else {reward})
    adv = _valid(out.advantages, inputs.completion_mask)[0]
    pen = [a for a, w in zip(adv, expected_w[0]) if w > 0]
    rest = [a for a, w in zip(adv, expected_w[0]) if w == 0]
    if penalised != reward:
        assert max(pen) < min(rest)  # the argument for the wrong item ends below the rest of its rollout


def test_open_task_penalises_per_wrong_title() -> None:
    rollouts = [
        Rollout(
            [("Alien (1979): director Ridley Scott.", 0), ("\n", 0), ("SE7EN is dark.", W), ("\n", 0),
             ("face/off fits.", W), ("\n", 0), ("Aliens is a sequel.", 0), ("\n", 0),
             ("\\boxed{Alien (1979); Se7en (1995); Face/Off (1997)}", 0)],
            0.3, truth="Alien (1979)", max_titles=None,
        ),
        Rollout([("\\boxed{Alien (1979)}", 0)], 1.0, truth="Alien (1979)", max_titles=None),
    ]
    inputs, expected_w = _batch(rollouts, group_size=2)
    assert inputs.wrong_titles[0] == ["Se7en (1995)", "Face/Off (1997)"]
    out = RAAEAdvantage()(inputs)
    for g, w in zip(_valid(out.token_rewards, inputs.completion_mask), _expected(rollouts, expected_w)):
        assert g == pytest.approx(w, abs=1e-6)
    assert out.metrics["raae/penalized_segment_frac"] == pytest.approx(2 / 4)


@pytest.mark.parametrize(
    ("line", "hit"),
    [
        ("What's Up, Doc? (1972) is witty.", True),
        ("what’s up, doc? is witty.", True),
        ("Whats up doc is witty.", False),
        ("Star Wars: Episode IV (1977) has space.", True),
        ("Star Wars has space.", False),
    ],
)
def test_regex_metacharacter_titles(line: str, hit: bool) -> None:
    for title in ("What's Up, Doc? (1972)", "Star Wars: Episode IV (1977)"):
        if title.split()[0].lower()[:4] not in line.lower():
            continue
        rollouts = [
            Rollout([(line, W if hit else 0), ("\n", 0), (f"\\boxed{{{title}}}", 0)], 0.2, truth="Alien (1979)"),
            Rollout([("\\boxed{Alien (1979)}", 0)], 1.0, truth="Alien (1979)"),
        ]
        inputs, expected_w = _batch(rollouts, group_size=2)
        out = RAAEAdvantage()(inputs)
        got = _valid(out.token_rewards, inputs.completion_mask)[0]
        assert got == pytest.approx(_expected(rollouts, expected_w)[0], abs=1e-6)


def test_paragraph_mode_penalises_the_whole_paragraph() -> None:
    rollouts = [
        Rollout([("Needs genre Drama.", 0), ("\n\n", 0), ("Se7en (1995) is a thriller.", W), ("\n", W),
                 ("It has no drama.", W), ("\n\n", 0), ("\\boxed{Se7en (1995)}", 0)], 0.1, truth="Alien (1979)"),
        Rollout([("\\boxed{Alien (1979)}", 0)], 1.0, truth="Alien (1979)"),
    ]
    inputs, expected_w = _batch(rollouts, group_size=2)
    out = RAAEAdvantage(segment_by="paragraph")(inputs)
    got = _valid(out.token_rewards, inputs.completion_mask)[0]
    assert got == pytest.approx(_expected(rollouts, expected_w)[0], abs=1e-6)


def test_multibyte_characters_split_across_tokens() -> None:
    tok = tiny_tokenizer()
    # "Amélie fits.\n東京 is far.\n\boxed{Amélie (2001)}" with é and 東 generated byte by byte.
    line1 = ["A", "m", "Ã", "©", "l", "i", "e", "Ġ", "f", "i", "t", "s", "."]
    line2 = ["æ", "Ŀ", "±", "ä", "º", "¬", "Ġ", "i", "s", "Ġ", "f", "a", "r", "."]
    answer = tok.convert_ids_to_tokens(tok.encode("\\boxed{Amélie (2001)}", add_special_tokens=False))
    tokens = [*line1, "Ċ", *line2, "Ċ", *answer, "<|im_end|>"]
    row0 = tok.convert_tokens_to_ids(tokens)
    assert None not in row0
    row1 = tok.encode("\\boxed{Silent River (1987)}", add_special_tokens=False) + [tok.eos_token_id]
    t = len(row0) + 1
    ids = torch.full((2, t), tok.pad_token_id)
    mask = torch.zeros(2, t, dtype=torch.bool)
    for i, r in enumerate((row0, row1)):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    text0 = tok.decode(row0, skip_special_tokens=True)
    assert text0 == "Amélie fits.\n東京 is far.\n\\boxed{Amélie (2001)}"
    inputs = AdvantageInputs(
        rewards=torch.tensor([0.5, 1.0]), group_size=2, completion_ids=ids, completion_mask=mask,
        completion_texts=[text0, "\\boxed{Silent River (1987)}"],
        recommended_titles=[["Amélie (2001)"], ["Silent River (1987)"]], wrong_titles=[["Amélie (2001)"], []],
        tokenizer=tok,
    )
    out = RAAEAdvantage()(inputs)
    got = out.token_rewards[0, : len(row0)].tolist()
    want = [0.35] * len(line1) + [0.5] * (1 + len(line2) + 1 + len(answer) + 1)
    assert got == pytest.approx(want, abs=1e-6)


def test_prompt_positions_and_padding_are_masked() -> None:
    rollouts = _group()
    rollouts[0].lead = 4  # four masked columns before row 0's completion
    inputs, expected_w = _batch(rollouts, group_size=3, extra_pad=3)
    out = RAAEAdvantage()(inputs)
    mask = inputs.completion_mask
    assert not mask[0, :4].any() and not out.advantages[0, :4].any()
    assert not out.advantages[~mask].any()
    assert _valid(out.token_rewards, mask)[0] == pytest.approx(_expected(rollouts, expected_w)[0], abs=1e-6)


def test_unparsable_answer_with_stale_wrong_titles_is_unchanged() -> None:
    rollouts = _group()
    inputs, _ = _batch(rollouts, group_size=3)
    inputs.wrong_titles = [inputs.wrong_titles[0], [], ["Se7en (1995)"]]  # row 2 is unparsable (None)
    out = RAAEAdvantage()(inputs)
    assert {round(x, 6) for x in _valid(out.token_rewards, inputs.completion_mask)[2]} == {-0.1}


def test_unreproducible_spans_are_counted_and_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    rollouts = _group()
    inputs, _ = _batch(rollouts, group_size=3)
    est = RAAEAdvantage()

    class Failing:
        tokenizer = inputs.tokenizer

        def __call__(self, ids, text=None):
            raise TokenSpanError("boom")

    est._mapper = Failing()  # type: ignore[assignment]
    out = est(inputs)
    assert out.metrics["raae/skipped_rollouts"] == 1.0
    assert {round(x, 6) for x in _valid(out.token_rewards, inputs.completion_mask)[0]} == {0.06}


def test_missing_inputs_are_named() -> None:
    inputs, _ = _batch(_group(), group_size=3)
    inputs.tokenizer = None
    with pytest.raises(ValueError, match="tokenizer"):
        RAAEAdvantage()(inputs)
    inputs, _ = _batch(_group(), group_size=3)
    with pytest.raises(ValueError, match="fact_checker"):
        RAAEAdvantage(kg_verify=True)(inputs)
    with pytest.raises(ValueError, match="w_penalty"):
        RAAEAdvantage(w_penalty=1.5)


# ------------------------------------------------------------------------------------------------
# KG-verified mode
# ------------------------------------------------------------------------------------------------

CATALOG = {1: "Silent River (1987)", 2: "Title Z (1990)", 3: "Painted Mirror, The (1987)", 4: "Alien (1979)"}
FACTS = {
    1: {("Directed_by", "Ann Lee"), ("Genre", "Drama")},
    2: {("Directed_by", "Bo Chen"), ("Genre", "Comedy"), ("Starring", "Ann Lee")},
    3: {("Directed_by", "Cy Dee"), ("Genre", "Drama"), ("Genre", "War")},
    4: {("Genre", "Horror")},
}


@dataclass(frozen=True)
class _Match:  # shaped like rerec.data.matching.TitleMatch
    item_id: int | None


_BY_TITLE = {t.lower(): i for i, t in CATALOG.items()}


def _match(title: str) -> _Match:
    return _Match(_BY_TITLE.get(title.strip().lower()))


def _checker() -> FactChecker:
    return FactChecker(_match, FACTS)


@pytest.mark.parametrize(
    ("segment", "found"),
    [
        ("Needs: director Ann Lee; genre Drama.", []),  # no item mentioned
        ("Silent River (1987): director Ann Lee; genre Drama. Match.", []),  # all true
        ("Title Z (1990): director Ann Lee.", [(2, "Directed_by", "Ann Lee")]),
        ("I think Title Z (1990) was directed by Ann Lee", [(2, "Directed_by", "Ann Lee")]),
        ("Title Z (1990) stars Ann Lee.", []),  # true under Starring
        ("Silent River (1987): director Bo Chen, not Ann Lee.", [(1, "Directed_by", "Bo Chen")]),
        ("Silent River (1987): director Ann Lee, not Bo Chen.", []),  # negated value
        ("Recall Silent River (1987): director Bo Chen, not Ann Lee.", [(1, "Directed_by", "Bo Chen")]),  # trace form
        ("Title Z (1990) is not directed by Ann Lee.", []),  # negation before the phrase
        ("Painted Mirror, The (1987): director Cy Dee; genre Drama, Comedy.", [(3, "Genre", "Comedy")]),
        ("Alien (1979): director Ann Lee.", []),  # the graph has no director for it: unknown
        ("Title Z (1990): director Zed Unknown.", []),  # not a known value
        ("Ann Lee directed Title Z (1990).", []),  # value before the item: not detected
        ("Title Z: director Ann Lee.", []),  # title without its year: not detected
        ("Silent River (1987) vs Title Z (1990): director Ann Lee.", [(2, "Directed_by", "Ann Lee")]),
    ],
)
def test_fact_checker(segment: str, found: list[tuple[int, str, str]]) -> None:
    got = _checker().contradictions(segment)
    assert [(c.item_id, c.relation, c.value) for c in got] == found
    for c in got:
        assert segment[c.start : c.end].lower() == c.value.lower()


def test_fact_checker_from_triples_and_custom_relation_phrases() -> None:
    triples = [Triple(2, "directed", "Bo Chen"), Triple(1, "directed", "Ann Lee")]
    by_title = {t.lower(): i for i, t in CATALOG.items()}
    checker = FactChecker.from_triples(lambda t: by_title.get(t.strip().lower()), triples,
                                       relation_phrases={"directed": ("helmed by",)})
    assert checker.relations == ("directed",)
    assert [c.value for c in checker.contradictions("Title Z (1990) was helmed by Ann Lee")] == ["Ann Lee"]
    assert checker.contradictions("Title Z (1990): director Ann Lee") == []  # "director" is not a phrase here


def _kg_rollouts() -> list[Rollout]:
    return [
        Rollout(  # wrong answer; weights: kg_penalty 0.5, w_penalty 0.2, the larger when both apply
            [("Title Z (1990): director Ann Lee.", 0.5), ("\n", 0),  # contradicted fact only
             ("Se7en (1995): genre Drama.", 0.2), ("\n", 0),  # wrong title only (Se7en is not in the graph)
             ("Title Z (1990) and Se7en (1995): director Ann Lee.", 0.5), ("\n", 0),  # both
             ("Silent River (1987): director Ann Lee.", 0), ("\n", 0),  # true fact
             ("\\boxed{Se7en (1995)}", 0)],
            0.2, truth="Silent River (1987)",
        ),
        Rollout(  # correct answer with a false fact: checked only with kg_all_rollouts
            [("Title Z (1990): director Ann Lee.", 0), ("\n", 0), ("\\boxed{Silent River (1987)}", 0)],
            1.0, truth="Silent River (1987)",
        ),
    ]


def test_kg_verified_raae_penalises_contradicted_facts() -> None:
    rollouts = _kg_rollouts()
    inputs, expected_w = _batch(rollouts, group_size=2, fact_checker=_checker())
    out = RAAEAdvantage(w_penalty=0.2, kg_verify=True, kg_penalty=0.5)(inputs)
    got = _valid(out.token_rewards, inputs.completion_mask)
    want = _expected(rollouts, expected_w)
    assert got[0] == pytest.approx(want[0], abs=1e-6)
    assert {round(x, 6) for x in got[1]} == {1.0}
    assert out.metrics["raae/kg_contradictions"] == 2.0
    assert out.metrics["raae/penalized_segment_frac"] == pytest.approx(3 / 4)

    all_rollouts = RAAEAdvantage(w_penalty=0.2, kg_verify=True, kg_penalty=0.5, kg_all_rollouts=True)(inputs)
    assert all_rollouts.metrics["raae/kg_contradictions"] == 3.0
    assert {round(x, 6) for x in _valid(all_rollouts.token_rewards, inputs.completion_mask)[1]} == {1.0, 0.5}
    # Without kg_verify only the wrong-title lines are penalised.
    plain = RAAEAdvantage(w_penalty=0.2)(inputs)
    assert {round(x, 6) for x in _valid(plain.token_rewards, inputs.completion_mask)[0]} == {0.2, 0.16}


def test_setup_builds_the_fact_checker_from_the_run_data() -> None:
    rollouts = _kg_rollouts()
    inputs, expected_w = _batch(rollouts, group_size=2)  # no fact_checker: the policy calls setup instead
    est = RAAEAdvantage(w_penalty=0.2, kg_verify=True, kg_penalty=0.5)
    with pytest.raises(ValueError, match="fact_checker"):
        est(inputs)
    est.setup(SimpleNamespace(matcher=SimpleNamespace(match=_match), attributes=FACTS))  # the data contract
    out = est(inputs)
    assert _valid(out.token_rewards, inputs.completion_mask)[0] == pytest.approx(
        _expected(rollouts, expected_w)[0], abs=1e-6
    )
    assert out.metrics["raae/kg_contradictions"] == 2.0
    # A checker given in the inputs is used instead of the one from setup.
    inputs.fact_checker = FactChecker(_match, {2: {("Directed_by", "Ann Lee")}})
    assert est(inputs).metrics["raae/kg_contradictions"] == 0.0


def test_fact_checker_prefers_an_exact_title_to_a_longer_fuzzy_span() -> None:
    # The warm-start trace writes "Recall <film>: ...". The longest span before "(1992)" fuzzily matches
    # another film at the threshold; the film itself is matched exactly by a shorter span.
    from rerec.data.matching import TitleMatcher
    from rerec.data.records import Item

    items = [Item(1, "Quiet Cathedral, The (1992)", ("Drama",)),
             Item(5, "Meadow of the Quiet Cathedral (1992)", ("Drama",))]  # same year: the matcher's year rule passes
    matcher = TitleMatcher(items, threshold=0.8)
    assert matcher.match("Recall The Quiet Cathedral (1992)").item_id == 5  # the trap
    checker = FactChecker(matcher.match, {1: {("Directed_by", "Ann Lee")}, 5: {("Directed_by", "Bo Chen")}})
    assert checker.contradictions("Recall The Quiet Cathedral (1992): director Ann Lee.") == []
    found = checker.contradictions("Recall The Quiet Cathedral (1992): director Bo Chen.")
    assert [(c.item_id, c.value) for c in found] == [(1, "Bo Chen")]
    # with only a fuzzy reading available, the longest span is still used
    assert checker.item_mentions("Meadow of the Quiet Cathedrals (1992)")[0][2] == 5


def _equally_wrong() -> list[Rollout]:
    """Two wrong answers with the same reward; only the first argues for its title in a reasoning line."""
    return [
        Rollout([("Se7en (1995): director Ann Lee.", W), ("\n", 0), ("\\boxed{Se7en (1995)}", 0)],
                reward=0.1, truth="Silent River (1987)"),
        Rollout([("Needs: director Ann Lee.", 0), ("\n", 0), ("\\boxed{Se7en (1995)}", 0)],
                reward=0.1, truth="Silent River (1987)"),
    ]


def test_token_baseline_rewards_the_unpenalised_tokens_of_equally_wrong_answers() -> None:
    """The paper's token mean: the penalty lowers the mean, so the wrong answer lines end above it."""
    rollouts = _equally_wrong()
    inputs, expected_w = _batch(rollouts, group_size=2)
    out = RAAEAdvantage(w_penalty=W, scale_rewards=False)(inputs)
    want = _expected(rollouts, expected_w)  # 0.07 on the penalised line, 0.1 elsewhere
    mean = statistics.fmean(x for row in want for x in row)
    assert mean < 0.1
    got = _valid(out.advantages, inputs.completion_mask)
    for g, w in zip(got, want):
        assert g == pytest.approx([x - mean for x in w], abs=1e-6)
    assert got[1][-2] > 0  # the last token of row 1's wrong \boxed{} answer (EOS is last)


@pytest.mark.parametrize("scale", [False, True])
def test_rollout_baseline_moves_only_the_penalised_segments_of_equally_wrong_answers(scale: bool) -> None:
    rollouts = _equally_wrong()
    inputs, expected_w = _batch(rollouts, group_size=2)
    out = RAAEAdvantage(w_penalty=W, scale_rewards=scale, baseline="rollouts")(inputs)
    want = _expected(rollouts, expected_w)
    dev = [[x - 0.1 for x in row] for row in want]  # centre = mean of the rollout rewards (0.1, 0.1)
    flat = [d for row in dev for d in row]
    rms = (sum(d * d for d in flat) / (len(flat) - 1)) ** 0.5
    for g, d in zip(_valid(out.advantages, inputs.completion_mask), dev):
        assert g == pytest.approx([x / (rms + EPS) if scale else x for x in d], abs=1e-5)
    penalised = [a for a, w in zip(_valid(out.advantages, inputs.completion_mask)[0], expected_w[0]) if w > 0]
    assert penalised and all(a < 0 for a in penalised)
    assert all(a == 0 for row, ws in zip(_valid(out.advantages, inputs.completion_mask), expected_w)
               for a, w in zip(row, ws) if w == 0)


def test_rollout_baseline_in_a_mixed_group_by_hand() -> None:
    rollouts = _group()  # rewards 0.06 (wrong, one penalised line), 1.05 (correct), -0.1 (unparsable)
    inputs, expected_w = _batch(rollouts, group_size=3)
    out = RAAEAdvantage(w_penalty=W, baseline="rollouts")(inputs)
    want = _expected(rollouts, expected_w)
    centre = (0.06 + 1.05 - 0.1) / 3
    dev = [[x - centre for x in row] for row in want]
    flat = [d for row in dev for d in row]
    rms = (sum(d * d for d in flat) / (len(flat) - 1)) ** 0.5
    for g, d in zip(_valid(out.advantages, inputs.completion_mask), dev):
        assert g == pytest.approx([x / (rms + EPS) for x in d], abs=1e-5)


def test_unknown_baseline_is_rejected() -> None:
    with pytest.raises(ValueError, match="baseline"):
        RAAEAdvantage(baseline="median")
