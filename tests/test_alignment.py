"""QAS / PAS against hand-computed values, batched scorer == plain-Python oracle (``ReferenceScorer``), and
the training reward (``RecReward`` with the default components on this graph) against hand-computed totals."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import pytest
import torch

from rerec.data.matching import TitleMatcher
from rerec.data.records import Item, Query, QueryType, Triple
from rerec.data.tasks import RecTask
from rerec.graph.alignment import CatalogIndex, GraphRewardScorer, load_item_embeddings
from rerec.graph.item_graph import ItemAttributeGraph
from rerec.graph.reference import ReferenceScorer
from rerec.rl.reward_components import FormatReward, NDCGReward, PASReward, QASReward
from rerec.rl.rewards import RecReward, RewardConfig

# 1: War, Tom Hanks, Spielberg | 2: War, Tom Hanks, Drama | 3: Drama, Tom Hanks | 4: Comedy | 5: nothing
TRIPLES = [
    Triple(1, "Genre", "War"),
    Triple(1, "Starring", "Tom Hanks"),
    Triple(1, "Directed_by", "Steven Spielberg"),
    Triple(2, "Genre", "War"),
    Triple(2, "Starring", "Tom Hanks"),
    Triple(2, "Genre", "Drama"),
    Triple(3, "Genre", "Drama"),
    Triple(3, "Starring", "Tom Hanks"),
    Triple(4, "Genre", "Comedy"),
]
CATALOG = [1, 2, 3, 4, 5]
# 1 and 2 point the same way, 3 is orthogonal to both, 4 is at 45 degrees, 5 has no embedding.
EMBEDDINGS = {
    "item_ids": torch.tensor([1, 2, 3, 4]),
    "embeddings": torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]),
}


def _scorer(**kw: object) -> GraphRewardScorer:
    return GraphRewardScorer.from_triples(TRIPLES, CATALOG, EMBEDDINGS, **kw)  # type: ignore[arg-type]


def _score(scorer: GraphRewardScorer, pairs: list[tuple[int, list[int]]]) -> dict[str, list[float]]:
    width = max(len(t) for _, t in pairs)
    pred = torch.tensor([p for p, _ in pairs])
    truth = torch.tensor([t + [-1] * (width - len(t)) for _, t in pairs])
    return {k: v.tolist() for k, v in scorer(pred, truth).items()}


def test_qas_one_truth() -> None:
    qas = _score(_scorer(), [(3, [1]), (2, [1]), (1, [1]), (4, [1]), (1, [3])])["qas"]
    # A(1) = {War, Hanks, Spielberg}: item 3 shares Hanks, item 2 War and Hanks, item 4 nothing.
    # A(3) = {Drama, Hanks}: item 1 shares Hanks only.
    assert qas == pytest.approx([1 / 3, 2 / 3, 1.0, 0.0, 1 / 2])


def test_qas_several_truths_uses_intersection() -> None:
    qas = _score(_scorer(), [(3, [1, 2]), (1, [1, 2]), (4, [1, 2]), (2, [2, 3])])["qas"]
    # A(1) ∩ A(2) = {War, Hanks}; A(2) ∩ A(3) = {Drama, Hanks}.
    assert qas == pytest.approx([1 / 2, 1.0, 0.0, 1.0])


def test_qas_unknown_item_and_empty_neighbourhood() -> None:
    qas = _score(
        _scorer(),
        [
            (99, [1]),  # prediction not in the graph
            (-1, [1]),  # no prediction
            (1, [1, 4]),  # A(1) ∩ A(4) is empty
            (1, [5]),  # truth in the catalog without any attribute
            (1, [1, 99]),  # truth not in the graph: empty neighbourhood, empty intersection
            (1, []),  # no truth at all
            (5, [1]),  # prediction in the graph without attributes
        ],
    )["qas"]
    assert qas == [0.0] * 7


def test_qas_weighted() -> None:
    scorer = _scorer(weighting="inverse_frequency")
    assert scorer.weighted
    qas = _score(scorer, [(3, [1]), (2, [1, 2])])["qas"]
    war, hanks, spielberg = math.log(1 + 5 / 2), math.log(1 + 5 / 3), math.log(1 + 5 / 1)
    assert qas[0] == pytest.approx(hanks / (war + hanks + spielberg), abs=1e-6)
    assert qas[1] == pytest.approx(1.0)
    by_relation = _score(_scorer(relation_weights={"Genre": 0.5}), [(2, [1])])["qas"]
    assert by_relation == pytest.approx([(0.5 + 1.0) / (0.5 + 1.0 + 1.0)])


def test_pas_cosine_and_max_over_truths() -> None:
    pas = _score(
        _scorer(),
        [
            (1, [1]),  # identical item
            (2, [1]),  # same direction
            (3, [1]),  # orthogonal
            (4, [1]),  # 45 degrees
            (2, [3, 4]),  # max(0, 1/sqrt2)
            (3, [1, 2, 4]),  # max(0, 0, 1/sqrt2)
            (5, [1]),  # prediction without embedding
            (2, [5]),  # truth without embedding
            (2, [5, 1]),  # truths without embedding are skipped
            (-1, [1]),
        ],
    )["pas"]
    r = 1 / math.sqrt(2)
    assert pas == pytest.approx([1.0, 1.0, 0.0, r, r, r, 0.0, 0.0, 1.0, 0.0], abs=1e-6)


def test_pas_disabled_warns_once_and_returns_zeros() -> None:
    with pytest.warns(RuntimeWarning, match="PAS disabled") as record:
        scorer = GraphRewardScorer.from_triples(TRIPLES, CATALOG, None)
    assert len([w for w in record if "PAS disabled" in str(w.message)]) == 1
    assert scorer.pas_enabled is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scoring must not warn again
        out = _score(scorer, [(1, [1]), (3, [1])])
        out = _score(scorer, [(1, [1]), (3, [1])])
    assert out["pas"] == [0.0, 0.0]
    assert out["qas"] == pytest.approx([1.0, 1 / 3])


def test_embeddings_file_roundtrip_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "item_embeddings.pt"
    torch.save(EMBEDDINGS, path)
    table = load_item_embeddings(path)
    assert table["item_ids"].tolist() == [1, 2, 3, 4]
    scorer = GraphRewardScorer.from_triples(TRIPLES, CATALOG, path)
    assert scorer.pas_enabled and _score(scorer, [(2, [1])])["pas"] == pytest.approx([1.0])
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "item_embeddings": EMBEDDINGS}, ckpt)
    assert load_item_embeddings(ckpt)["embeddings"].shape == (4, 2)
    torch.save({"item_ids": torch.tensor([1, 2]), "vectors": torch.zeros(2, 3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: field 'embeddings' is missing"):
        load_item_embeddings(tmp_path / "bad.pt")
    torch.save({"item_ids": torch.tensor([1, 2]), "embeddings": torch.zeros(3, 3)}, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match="shape"):
        load_item_embeddings(tmp_path / "shape.pt")
    with pytest.raises(FileNotFoundError):
        load_item_embeddings(tmp_path / "missing.pt")


def test_buffers_move_with_module_and_stay_out_of_state_dict() -> None:
    scorer = _scorer()
    assert scorer.state_dict() == {}  # rebuilt from data, never restored from a policy checkpoint
    names = {n for n, _ in scorer.named_buffers()}
    assert {"member_bits", "crow", "col", "unit_embeddings", "item_index.table", "embedding_index.table"} <= names
    policy = torch.nn.Module()
    policy.scorer = scorer
    policy.to(torch.bfloat16)  # what precision="bf16-true" does to the policy: tables stay float32
    assert scorer.similarity.dtype == torch.float32 and scorer.attribute_weights.dtype == torch.float32
    assert scorer.crow.dtype == torch.long
    assert _score(scorer, [(4, [1])])["pas"] == pytest.approx([1 / math.sqrt(2)], abs=1e-6)


def test_catalog_index_dense_and_sparse() -> None:
    ids = torch.tensor([7, 3, 12])
    query = torch.tensor([[3, 12, -1], [5, 7, 99]])
    want = [[1, 2, -1], [-1, 0, -1]]
    dense = CatalogIndex(ids)
    assert dense.dense and dense(query).tolist() == want
    sparse = CatalogIndex(ids, max_table_size=0)
    assert not sparse.dense and sparse(query).tolist() == want
    huge = CatalogIndex(torch.tensor([10**12, 5, -7]))  # span too large for a table: binary search
    assert not huge.dense
    assert huge(torch.tensor([5, 10**12, -7, -1, 0])).tolist() == [1, 0, 2, -1, -1]
    assert CatalogIndex(torch.zeros(0, dtype=torch.long))(torch.tensor([1, -1])).tolist() == [-1, -1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    scorer = _scorer()
    pairs = [(3, [1, 2]), (2, [3, 4]), (99, [1])]
    cpu = _score(scorer, pairs)
    gpu = _score(scorer.to("cuda"), pairs)
    assert gpu["qas"] == pytest.approx(cpu["qas"]) and gpu["pas"] == pytest.approx(cpu["pas"])


def test_input_validation() -> None:
    scorer = _scorer()
    with pytest.raises(ValueError, match=r"\(R,\)"):
        scorer(torch.tensor([1, 2]), torch.tensor([[1]]))
    with pytest.raises(TypeError):
        scorer(torch.tensor([1.0]), torch.tensor([[1]]))
    empty = scorer(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long))
    assert empty["qas"].shape == (0,) and empty["pas"].shape == (0,)


def _random_world(
    seed: int, weighting: str, dense: bool = True
) -> tuple[GraphRewardScorer, ReferenceScorer, list[int]]:
    rng = random.Random(seed)
    catalog = list(range(100, 160))
    attrs = [("Genre", f"g{k}") for k in range(4)] + [("Starring", f"a{k}") for k in range(12)]
    triples = [Triple(i, *a) for i in catalog[:-5] for a in rng.sample(attrs, rng.randint(0, 8))]
    emb_ids = [i for i in catalog if rng.random() < 0.85]
    vectors = torch.randn(len(emb_ids), 8, generator=torch.Generator().manual_seed(seed))
    vectors[0] = 0.0  # a zero vector: cosine 0 with everything
    emb = {"item_ids": torch.tensor(emb_ids), "embeddings": vectors}
    graph = ItemAttributeGraph.from_triples(triples, catalog, weighting=weighting)  # type: ignore[arg-type]
    budget = 2**28 if dense else 0  # 0: binary-search membership and per-call cosines
    scorer = GraphRewardScorer(graph, emb, max_bitmap_bytes=budget, max_similarity_bytes=budget)
    return scorer, ReferenceScorer.from_graph(graph, emb), catalog


@pytest.mark.parametrize(
    ("weighting", "dense"), [("none", True), ("inverse_frequency", True), ("none", False), ("inverse_frequency", False)]
)
def test_batched_equals_reference_on_random_batches(weighting: str, dense: bool) -> None:
    scorer, reference, catalog = _random_world(seed=3, weighting=weighting, dense=dense)
    assert scorer.use_bitmap is dense and bool(scorer.similarity.numel()) is dense
    rng = random.Random(7)
    pool = catalog + [-1, 5000, 7]  # unknown ids too
    for layout in ("grouped", "shuffled", "grouped"):
        pred: list[int] = []
        truths: list[list[int]] = []
        while len(pred) < 300:  # prompts with G rollouts sharing their truths, as in training
            truth = [rng.choice(catalog + [9999]) for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4)))]
            for _ in range(rng.randint(1, 5)):
                # Bias towards overlap so that QAS is often non-zero.
                pred.append(rng.choice(truth) if truth and rng.random() < 0.3 else rng.choice(pool))
                truths.append(truth)
        if layout == "shuffled":
            order = list(range(len(pred)))
            rng.shuffle(order)
            pred, truths = [pred[i] for i in order], [truths[i] for i in order]
        width = max(1, max(len(t) for t in truths))
        out = scorer(torch.tensor(pred), torch.tensor([t + [-1] * (width - len(t)) for t in truths]))
        want_qas = [reference.qas(p, t) for p, t in zip(pred, truths)]
        want_pas = [reference.pas(p, t) for p, t in zip(pred, truths)]
        assert out["qas"].tolist() == pytest.approx(want_qas, abs=1e-6)
        assert out["pas"].tolist() == pytest.approx(want_pas, abs=1e-6)
        assert sum(0 < q < 1 for q in want_qas) > 10  # the batch exercises non-trivial cases
        assert sum(len(t) > 1 and q > 0 for q, t in zip(want_qas, truths)) > 5


def test_reference_oracle_hand_computed_and_equal_to_batched() -> None:
    reference = ReferenceScorer.from_graph(ItemAttributeGraph.from_triples(TRIPLES, CATALOG), EMBEDDINGS)
    pairs = [(3, [1]), (2, [1]), (1, [3]), (3, [1, 2]), (4, [1]), (2, [5, 1]), (99, [1]), (1, [1, 4])]
    want_qas = [1 / 3, 2 / 3, 1 / 2, 1 / 2, 0.0, 0.0, 0.0, 0.0]
    want_pas = [0.0, 1.0, 0.0, 0.0, 1 / math.sqrt(2), 1.0, 0.0, 1.0]
    assert [reference.qas(p, t) for p, t in pairs] == pytest.approx(want_qas)
    assert [reference.pas(p, t) for p, t in pairs] == pytest.approx(want_pas)
    batched = _score(_scorer(), pairs)
    assert batched["qas"] == pytest.approx(want_qas, abs=1e-6) and batched["pas"] == pytest.approx(want_pas, abs=1e-6)


TITLES = {1: "Saving Private Ryan (1998)", 2: "Forrest Gump (1994)", 3: "Big (1988)", 4: "Airplane! (1980)",
          5: "Heat (1995)"}


def _training_reward(k: int = 1, max_titles: int = 1, require_candidate: bool = False,
                     weights: tuple[float, float, float, float] = (0.1, 1.0, 0.01, 0.01)) -> RecReward:
    """The reward training uses: format, NDCG@K, QAS, PAS (default weights) on the batched graph scorer."""
    w_fmt, w_ndcg, w_qas, w_pas = weights
    components = [FormatReward(w_fmt), NDCGReward(w_ndcg), QASReward(w_qas), PASReward(w_pas)]
    scorer = _scorer()
    for component in components:
        component.setup(None, scorer)
    items = {i: Item(i, t) for i, t in TITLES.items()}
    return RecReward(RewardConfig(k=k, require_candidate=require_candidate), items, TitleMatcher(TITLES),
                     components, max_titles)


def _task(truth: tuple[int, ...], candidates: tuple[int, ...] = ()) -> RecTask:
    """An open task, or with ``candidates`` a candidate task whose target is the first truth."""
    query = Query(query_id="q", domain="movie", query_type=QueryType.EXPLICIT, text="q", truth_item_ids=truth)
    return RecTask(query, candidates, truth[0] if candidates else -1)


def _scored(reward: RecReward, texts: list[str], tasks: list[RecTask]) -> list[dict[str, float]]:
    out = reward(texts, tasks)
    return [{**{n: float(v[i]) for n, v in out.components.items()}, "total": float(out.total[i])}
            for i in range(len(texts))]


def test_training_reward_hand_computed() -> None:
    texts = ["so \\boxed{Saving Private Ryan (1998)}", "\\boxed{forrest gump}", "no box here",
             "\\boxed{Some Unknown Film}"]
    hit, near, bad, unmatched = _scored(_training_reward(), texts, [_task((1,))] * 4)
    assert hit == pytest.approx({"format": 0.5, "ndcg": 1.0, "qas": 1.0, "pas": 1.0, "total": 0.05 + 1 + 0.01 + 0.01})
    # normalised match of item 2: A(1) ∩ A(2) = {War, Hanks} of A(1)'s three; cos(2, 1) = 1
    assert near["total"] == pytest.approx(0.1 * 0.5 + 0.0 + 0.01 * 2 / 3 + 0.01 * 1.0)
    assert bad == pytest.approx({"format": -0.5, "ndcg": -0.5, "qas": 0.0, "pas": 0.0, "total": -0.55})
    assert unmatched["total"] == pytest.approx(0.05)
    (custom,) = _scored(_training_reward(weights=(1.0, 2.0, 3.0, 4.0)), ["\\boxed{Big (1988)}"], [_task((1,))])
    assert custom["total"] == pytest.approx(1.0 * 0.5 + 2.0 * 0.0 + 3.0 * (1 / 3) + 4.0 * 0.0)


def test_training_reward_averages_graph_scores_over_first_k() -> None:
    reward = _training_reward(k=2, max_titles=2)
    texts = ["\\boxed{Forrest Gump (1994); Saving Private Ryan (1998); Heat (1995)}",  # third title beyond K
             "\\boxed{Big (1988); Nowhere Film}"]  # an unmatched title scores 0 and still counts
    listed, half = _scored(reward, texts, [_task((1,))] * 2)
    # NDCG@2: the truth at rank 2 → (1/log2 3) / 1; QAS mean(2/3, 1); PAS mean(1, 1)
    assert listed == pytest.approx({"format": 0.5, "ndcg": 1 / math.log2(3), "qas": 5 / 6, "pas": 1.0,
                                    "total": 0.05 + 1 / math.log2(3) + 0.01 * 5 / 6 + 0.01})
    # QAS mean(1/3, 0); PAS mean(cos(3, 1) = 0, 0)
    assert half == pytest.approx({"format": 0.5, "ndcg": 0.0, "qas": 1 / 6, "pas": 0.0, "total": 0.05 + 0.01 / 6})


def test_training_reward_candidate_rules() -> None:
    task = _task((1,), candidates=(3, 1, 2))  # target 1
    texts = ["\\boxed{Airplane! (1980)}",  # off the list: item 4, cos(4, 1) = 1/sqrt2, no shared attribute
             "\\boxed{Big}"]  # a listed title without its year: candidate 3
    off, listed = _scored(_training_reward(), texts, [task] * 2)
    assert off == pytest.approx({"format": 0.5, "ndcg": 0.0, "qas": 0.0, "pas": 1 / math.sqrt(2),
                                 "total": 0.05 + 0.01 / math.sqrt(2)}, abs=1e-6)
    assert listed["total"] == pytest.approx(0.05 + 0.01 / 3)
    strict_off, strict_listed = _scored(_training_reward(require_candidate=True), texts, [task] * 2)
    assert strict_off == pytest.approx({"format": -0.5, "ndcg": -0.5, "qas": 0.0, "pas": 0.0, "total": -0.55})
    assert strict_listed == pytest.approx(listed)
