"""Unit tests of the online curriculum: scheduler, sampler, state, metrics, zero-variance filter."""

from __future__ import annotations

import hashlib
import io
import logging
from types import SimpleNamespace

import pytest
import torch
from jsonargparse import ArgumentParser

from rerec.data.curriculum import (
    CurriculumConfig,
    CurriculumController,
    CurriculumDataLoader,
    CurriculumDataModuleMixin,
    CurriculumSampler,
    curriculum_of,
)
from rerec.data.records import QueryType


def ids(n: int) -> list[str]:
    return [f"q{i}" for i in range(n)]


def make(n: int, batch_size: int = 1, seed: int = 0, **config: object) -> CurriculumController:
    config.setdefault("min_active", 1)
    return CurriculumController(ids(n), ["explicit"] * n, batch_size, CurriculumConfig(**config), seed)


def run_epoch(ctl: CurriculumController, ndcg: dict[str, float], std: dict[str, float] | None = None) -> None:
    """Report every remaining batch of the epoch (as a training loop would), then apply the boundary."""
    names = [ctl._query_ids[i] for i in ctl.shard()]
    while ctl.position < len(names):
        batch = names[ctl.position : ctl.position + ctl.batch_size]
        ctl.report(batch, [ndcg[q] for q in batch], [(std or {}).get(q, 0.0) for q in batch])
    assert ctl.on_epoch_end()


def served_names(ctl: CurriculumController) -> list[str]:
    return [ctl._query_ids[i] for i in ctl.order]


def hashed_order(names: list[str], seed: int, epoch: int) -> list[str]:
    """Independent re-statement of the tie-break rule: blake2b-64 of (seed, epoch, query id), ascending."""

    def key(q: str) -> int:
        digest = hashlib.blake2b(f"{seed}\x1f{epoch}\x1f{q}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    return sorted(names, key=key)


# --------------------------------------------------------------------------------------------- scheduler
def test_never_seen_queries_have_difficulty_one() -> None:
    ctl = make(4, batch_size=2)
    assert [ctl.difficulty(q) for q in ids(4)] == [1.0, 1.0, 1.0, 1.0]
    first = [ctl._query_ids[i] for i in ctl.shard()[:2]]
    ctl.report(first, [0.25, 1.0], [0.0, 0.0])
    assert ctl.difficulty(first[0]) == 0.75 and ctl.difficulty(first[1]) == 0.0
    rest = [q for q in ids(4) if q not in first]
    assert [ctl.difficulty(q) for q in rest] == [1.0, 1.0]
    assert ctl.metrics()["curriculum/mean_difficulty"] == pytest.approx((0.75 + 0.0 + 1.0 + 1.0) / 4)


NDCG = {"q0": 1.0, "q1": 0.95, "q2": 0.85, "q3": 0.5, "q4": 0.0, "q5": 0.25}  # difficulty 0 .05 .15 .5 1 .75


def test_tau_drops_mastered_and_orders_easy_to_hard() -> None:
    ctl = make(6, tau=0.1)
    run_epoch(ctl, NDCG)
    assert served_names(ctl) == ["q2", "q3", "q5", "q4"]
    mean_difficulty = (0 + 0.05 + 0.15 + 0.5 + 1 + 0.75) / 6
    expected = {"epoch": 1, "active": 4, "dropped": 2, "mean_difficulty": pytest.approx(mean_difficulty)}
    assert ctl.history[-1] == expected


def test_tau_boundary_is_strict() -> None:
    ctl = make(6, tau=0.5)  # q3 has difficulty exactly 0.5: not below tau, so kept
    run_epoch(ctl, NDCG)
    assert served_names(ctl) == ["q3", "q5", "q4"]


def test_hard_to_easy_and_random_orders() -> None:
    hard = make(6, tau=0.1, order="hard_to_easy")
    run_epoch(hard, NDCG)
    assert served_names(hard) == ["q4", "q5", "q3", "q2"]
    rnd = make(6, tau=0.1, order="random", seed=3)
    run_epoch(rnd, NDCG)
    assert served_names(rnd) == hashed_order(["q2", "q3", "q4", "q5"], seed=3, epoch=1)


def test_ties_are_broken_by_seeded_hash_not_list_order() -> None:
    same = {q: 0.5 for q in ids(20)}
    a, b, c = make(20, seed=7), make(20, seed=7), make(20, seed=8)
    for ctl in (a, b, c):
        run_epoch(ctl, same)
    assert served_names(a) == served_names(b) == hashed_order(ids(20), seed=7, epoch=1)
    assert served_names(a) != served_names(c)
    assert served_names(a) != ids(20)
    # The same queries listed in another order get the same tie order.
    reversed_ids = ids(20)[::-1]
    d = CurriculumController(reversed_ids, ["explicit"] * 20, 1, CurriculumConfig(min_active=1), 7)
    run_epoch(d, same)
    assert served_names(d) == served_names(a)
    # Ties only break ties: a harder query still comes after every easier one.
    mixed = dict(same, q0=0.1)
    e = make(20, seed=7)
    run_epoch(e, mixed)
    assert served_names(e)[-1] == "q0"


def test_first_epoch_shuffle_is_seeded_or_dataset_order() -> None:
    assert served_names(make(20, shuffle_first_epoch=False)) == ids(20)
    assert served_names(make(20, seed=5)) == hashed_order(ids(20), seed=5, epoch=0) != ids(20)


def test_fallback_to_full_set_when_less_than_one_batch_remains() -> None:
    ten = {q: (1.0 if i < 7 else 0.0) for i, q in enumerate(ids(10))}  # 7 mastered, 3 left < B=4
    ctl = CurriculumController(ids(10), ["explicit"] * 10, 4, CurriculumConfig(), seed=0)
    run_epoch(ctl, ten)
    assert sorted(ctl.order) == list(range(10))
    assert sorted(served_names(ctl)[7:]) == ["q7", "q8", "q9"]  # still easy → hard
    assert ctl.metrics()["curriculum/fallback"] == 1.0 and ctl.metrics()["curriculum/dropped"] == 0.0

    six = {q: (1.0 if i < 6 else 0.0) for i, q in enumerate(ids(10))}  # 4 left == one batch: no fallback
    ctl = CurriculumController(ids(10), ["explicit"] * 10, 4, CurriculumConfig(), seed=0)
    run_epoch(ctl, six)
    assert sorted(served_names(ctl)) == ["q6", "q7", "q8", "q9"]
    assert ctl.metrics()["curriculum/fallback"] == 0.0

    ctl = CurriculumController(ids(10), ["explicit"] * 10, 4, CurriculumConfig(min_active=5), seed=0)
    run_epoch(ctl, six)
    assert len(ctl.order) == 10


def test_default_min_active_is_one_global_batch() -> None:
    ctl = CurriculumController(ids(16), ["explicit"] * 16, 2, CurriculumConfig(), 0, world_size=3, rank=0)
    assert ctl._min_active() == 6


@pytest.mark.parametrize("return_after", [None, 1, 2])
def test_dropped_queries_return_after_r_epochs(return_after: int | None) -> None:
    ctl = make(4, return_after=return_after)
    ndcg = {"q0": 1.0, "q1": 0.0, "q2": 0.0, "q3": 0.0}
    orders = [served_names(ctl)]
    for _ in range(5):
        run_epoch(ctl, ndcg)
        orders.append(served_names(ctl))
    with_q0 = [e for e, names in enumerate(orders) if "q0" in names]
    expected = {None: [0], 1: [0, 2, 4], 2: [0, 3]}[return_after]
    assert with_q0 == expected
    for epoch in expected[1:]:
        assert orders[epoch][0] == "q0"  # a returning mastered query is the easiest


def test_static_mode_never_drops_and_reshuffles_each_epoch() -> None:
    ctl = make(20, mode="static", seed=4)
    orders = [served_names(ctl)]
    for _ in range(2):
        run_epoch(ctl, {q: 1.0 for q in ids(20)})
        orders.append(served_names(ctl))
    assert orders == [hashed_order(ids(20), seed=4, epoch=e) for e in range(3)]
    assert orders[0] != orders[1] != orders[2]
    assert [h["dropped"] for h in ctl.history] == [0, 0, 0]
    assert ctl.metrics()["curriculum/mean_difficulty"] == 0.0  # still tracked


def test_metrics_and_history_hand_values() -> None:
    types = [QueryType.EXPLICIT, QueryType.EXPLICIT, "implicit", "implicit"]
    ctl = CurriculumController(ids(4), types, 2, CurriculumConfig(min_active=1), seed=0)
    assert ctl.metrics() == {
        "curriculum/epoch": 0.0,
        "curriculum/active": 4.0,
        "curriculum/dropped": 0.0,
        "curriculum/fallback": 0.0,
        "curriculum/mean_difficulty": 1.0,
        "curriculum/mean_reward_std": 0.0,
        "curriculum/difficulty/explicit": 1.0,
        "curriculum/difficulty/implicit": 1.0,
    }
    ndcg = {"q0": 1.0, "q1": 0.5, "q2": 0.0, "q3": 0.2}
    run_epoch(ctl, ndcg, std={"q0": 0.0, "q1": 0.5, "q2": 0.0, "q3": 0.4})
    m = ctl.metrics()
    assert m["curriculum/epoch"] == 1.0 and m["curriculum/active"] == 3.0 and m["curriculum/dropped"] == 1.0
    assert m["curriculum/mean_difficulty"] == pytest.approx((0 + 0.5 + 1.0 + 0.8) / 4)
    assert m["curriculum/difficulty/explicit"] == pytest.approx(0.25)
    assert m["curriculum/difficulty/implicit"] == pytest.approx(0.9)
    assert m["curriculum/mean_reward_std"] == pytest.approx(0.9 / 4)
    assert ctl.history == [
        {"epoch": 0, "active": 4, "dropped": 0, "mean_difficulty": 1.0},
        {"epoch": 1, "active": 3, "dropped": 1, "mean_difficulty": pytest.approx(0.575)},
    ]


def test_duplicate_query_ids_share_difficulty() -> None:
    ctl = CurriculumController(["a", "b", "a"], ["explicit"] * 3, 1, CurriculumConfig(min_active=1), seed=0)
    run_epoch(ctl, {"a": 1.0, "b": 0.0})
    assert ctl.order == [1]  # both examples of the mastered query "a" are dropped


# --------------------------------------------------------------------------------------------- report
def test_report_rejects_bad_input() -> None:
    ctl = make(4, batch_size=2)
    first = [ctl._query_ids[i] for i in ctl.shard()[:2]]
    with pytest.raises(ValueError, match="2 query_ids, 1 mean_ndcg"):
        ctl.report(first, [0.5], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"mean_ndcg\[1\]=1.5"):
        ctl.report(first, [0.5, 1.5], [0.0, 0.0])
    with pytest.raises(ValueError, match="not the next examples"):
        ctl.report(first[::-1][:1] + ["q9"], [0.5, 0.5], [0.0, 0.0])
    assert ctl.position == 0  # nothing was recorded
    ctl.report(first[::-1], torch.tensor([0.5, 0.25]), torch.tensor([0.1, 0.2]))  # any order, tensors ok
    assert ctl.position == 2 and ctl.difficulty(first[0]) == 0.75
    ctl.report([ctl._query_ids[i] for i in ctl.shard()[2:]], [0.0, 0.0], [float("nan")] * 2)
    with pytest.raises(ValueError, match="was the epoch boundary missed"):
        ctl.report(first, [0.5, 0.5], [0.0, 0.0])


def test_report_needs_torch_distributed_for_several_ranks() -> None:
    ctl = CurriculumController(ids(4), ["x"] * 4, 1, CurriculumConfig(min_active=1), 0, world_size=2, rank=1)
    with pytest.raises(RuntimeError, match="not initialised"):
        ctl.report([ctl._query_ids[ctl.shard()[0]]], [0.5], [0.0])


# --------------------------------------------------------------------------------------------- sampler
def test_sampler_serves_the_unconsumed_tail_and_ignores_prefetch() -> None:
    ctl = make(10, batch_size=4, seed=1)
    sampler = ctl.sampler()
    shard = ctl.shard()
    assert len(sampler) == 10 and list(sampler) == shard
    iterator = iter(sampler)
    [next(iterator) for _ in range(8)]  # a prefetching DataLoader runs ahead ...
    assert ctl.position == 0  # ... without moving the position
    ctl.report([ctl._query_ids[i] for i in shard[:4]], [0.0] * 4, [0.0] * 4)
    assert list(ctl.sampler()) == shard[4:] and len(ctl.sampler()) == 10


def test_sampler_applies_a_pending_boundary_and_on_epoch_end_is_idempotent() -> None:
    ctl = make(5, batch_size=2)
    names = [ctl._query_ids[i] for i in ctl.shard()]
    ctl.report(names[:2], [1.0, 1.0], [0.0, 0.0])
    assert not ctl.on_epoch_end()  # interrupted epoch (e.g. max_steps): no boundary
    assert (ctl.epoch, ctl.position) == (0, 2)
    ctl.report(names[2:4], [0.0, 0.0], [0.0, 0.0])
    ctl.report(names[4:], [0.0], [0.0])
    assert len(ctl.sampler()) == 3  # boundary applied lazily: names[:2] were mastered
    assert (ctl.epoch, ctl.position) == (1, 0)
    assert not ctl.on_epoch_end()
    assert len(ctl.history) == 2


def test_on_epoch_end_with_trainer_honours_limit_train_batches() -> None:
    ctl = make(8, batch_size=2)
    ctl.report([ctl._query_ids[i] for i in ctl.shard()[:2]], [0.0, 0.0], [0.0, 0.0])

    def trainer(ready: int, limit: int) -> SimpleNamespace:
        progress = SimpleNamespace(current=SimpleNamespace(ready=ready))
        loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
        return SimpleNamespace(fit_loop=loop, num_training_batches=limit)

    assert not ctl.on_epoch_end(trainer(ready=1, limit=4))  # stopped by max_steps
    assert ctl.on_epoch_end(trainer(ready=1, limit=1))  # epoch limited to one batch
    assert ctl.epoch == 1
    # A boundary already applied by the sampler (len() after the last batch) is not applied twice.
    for start in range(0, 8, 2):
        ctl.report([ctl._query_ids[i] for i in ctl.shard()[start : start + 2]], [0.0, 0.0], [0.0, 0.0])
    assert len(ctl.sampler()) == 8 and ctl.epoch == 2
    assert not ctl.on_epoch_end(trainer(ready=4, limit=4))
    assert ctl.epoch == 2


def test_rank_shards_are_disjoint_cyclically_padded_and_equal_length() -> None:
    def shards(world: int) -> tuple[list[int], list[list[int]]]:
        ctls = [
            CurriculumController(ids(7), ["x"] * 7, 1, CurriculumConfig(), 0, world_size=world, rank=r)
            for r in range(world)
        ]
        return ctls[0].order, [c.shard() for c in ctls]

    order, (s0, s1) = shards(2)
    o = order
    assert s0 == [o[0], o[2], o[4], o[6]] and s1 == [o[1], o[3], o[5], o[0]]
    order, three = shards(3)
    o = order
    assert three == [[o[0], o[3], o[6]], [o[1], o[4], o[0]], [o[2], o[5], o[1]]]
    sampler = CurriculumController(ids(7), ["x"] * 7, 1, None, 0, world_size=2, rank=1).sampler()
    assert isinstance(sampler, torch.utils.data.DistributedSampler)  # so Lightning does not re-shard it
    assert (sampler.num_replicas, sampler.rank, len(sampler), sampler.total_size) == (2, 1, 4, 8)


def test_set_epoch_mismatch_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    sampler = make(4).sampler()
    with caplog.at_level(logging.WARNING, logger="rerec.data.curriculum"):
        sampler.set_epoch(0)
        assert not caplog.records
        sampler.set_epoch(1)
    assert "differs from the trainer's epoch" in caplog.text


# --------------------------------------------------------------------------------------------- state
def test_state_round_trip_through_torch_save_weights_only() -> None:
    ndcg = {q: i / 10 for i, q in enumerate(ids(10))}
    a = make(10, batch_size=2, seed=9, return_after=1, tau=0.35)
    run_epoch(a, ndcg)
    names = [a._query_ids[i] for i in a.shard()]
    a.report(names[:2], [1.0, 1.0], [0.3, 0.3])
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    b = make(10, batch_size=2, seed=123, return_after=1, tau=0.35)
    b.load_state_dict(state)
    assert (b.epoch, b.position, b.order, b.shard(), b.history, b.seed) == (
        a.epoch, a.position, a.order, a.shard(), a.history, a.seed,
    )
    assert [b.difficulty(q) for q in ids(10)] == [a.difficulty(q) for q in ids(10)]
    assert list(b.sampler()) == list(a.sampler()) == a.shard()[2:]
    for ctl in (a, b):
        run_epoch(ctl, ndcg)
        run_epoch(ctl, ndcg)
    assert a.order == b.order and a.history == b.history and a.metrics() == b.metrics()


def test_load_state_dict_rejects_another_training_set_or_world_size() -> None:
    a = make(6, batch_size=2)
    a.report([a._query_ids[i] for i in a.shard()[:2]], [0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="does not match this training set"):
        make(7).load_state_dict(a.state_dict())
    renamed = CurriculumController([f"x{i}" for i in range(6)], ["x"] * 6, 2, None, 0)
    with pytest.raises(ValueError, match="does not match this training set"):
        renamed.load_state_dict(a.state_dict())
    other_world = CurriculumController(ids(6), ["x"] * 6, 2, None, 0, world_size=2, rank=0)
    with pytest.raises(ValueError, match="mid-epoch with world_size=2"):
        other_world.load_state_dict(a.state_dict())


# ------------------------------------------------------------------------------------------ data module side
class _Base:
    """Stands in for LightningDataModule's state hooks."""

    trainer = None

    def state_dict(self) -> dict:
        return {"base": 1}

    def load_state_dict(self, state: dict) -> None:
        self.base_state = state


class _DataModule(CurriculumDataModuleMixin, _Base):
    pass


def test_mixin_state_is_applied_when_the_controller_is_attached_later() -> None:
    source = _DataModule()
    source.attach_curriculum(make(6, batch_size=2))
    ctl = source.curriculum_controller
    ctl.report([ctl._query_ids[i] for i in ctl.shard()[:2]], [1.0, 0.0], [0.0, 0.0])
    state = source.state_dict()
    assert state["base"] == 1 and state["curriculum"]["position"] == 2

    target = _DataModule()
    target.load_state_dict(state)  # Lightning may restore before setup() built the controller
    assert target.base_state == {"base": 1}
    assert target.state_dict()["curriculum"] == state["curriculum"]
    target.attach_curriculum(make(6, batch_size=2))
    assert target.curriculum_controller.position == 2 and target.curriculum_controller.shard() == ctl.shard()
    assert curriculum_of(SimpleNamespace(datamodule=target)) is target.curriculum_controller
    assert curriculum_of(SimpleNamespace(datamodule=None)) is None


def test_mixin_dataloader_checks_its_arguments_and_the_trainer() -> None:
    dm = _DataModule()
    with pytest.raises(RuntimeError, match="attach_curriculum"):
        dm.curriculum_dataloader(list(range(6)))
    dm.attach_curriculum(make(6, batch_size=4))
    loader = dm.curriculum_dataloader(list(range(6)))
    assert isinstance(loader, CurriculumDataLoader) and isinstance(loader.sampler, CurriculumSampler)
    assert [len(b) for b in loader] == [4, 2]
    with pytest.raises(ValueError, match="set by the curriculum"):
        dm.curriculum_dataloader(list(range(6)), shuffle=True)
    with pytest.raises(ValueError, match="dataset has 5 examples"):
        dm.curriculum_dataloader(list(range(5)))
    dm.trainer = SimpleNamespace(reload_dataloaders_every_n_epochs=0)
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs=1"):
        dm.curriculum_dataloader(list(range(6)))


def test_loader_state_check_catches_an_unrestored_curriculum() -> None:
    ctl = make(6, batch_size=2)
    loader = CurriculumDataLoader(list(range(6)), batch_size=2, sampler=ctl.sampler())
    loader.load_state_dict({"epoch": 0, "position": 0})
    with pytest.raises(RuntimeError, match="must save and restore the curriculum"):
        loader.load_state_dict({"epoch": 1, "position": 4})


# --------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "dynamic"), ("order", "hardest"), ("tau", 1.5), ("return_after", 0), ("min_active", 0)],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"CurriculumConfig.{field}"):
        CurriculumConfig(**{field: value})


def test_config_through_jsonargparse_with_documented_help() -> None:
    parser = ArgumentParser()
    parser.add_class_arguments(CurriculumConfig, "curriculum")
    args = parser.parse_args(
        ["--curriculum.tau=0.2", "--curriculum.return_after=3", "--curriculum.mode=static"]
    )
    config = parser.instantiate(args).curriculum
    assert config == CurriculumConfig(mode="static", tau=0.2, return_after=3)
    help_text = parser.format_help()
    phrases = ("Mastery threshold", "comes back", "falls back to the full", "seeded shuffle")
    for phrase in phrases:
        assert phrase in " ".join(help_text.split())


def test_controller_rejects_bad_construction() -> None:
    with pytest.raises(ValueError, match="empty"):
        CurriculumController([], [], 2)
    with pytest.raises(ValueError, match="3 query_ids but 2 query_types"):
        CurriculumController(ids(3), ["x"] * 2, 2)
    with pytest.raises(ValueError, match="batch_size"):
        CurriculumController(ids(3), ["x"] * 3, 0)
    with pytest.raises(ValueError, match="rank 2 outside world_size 2"):
        CurriculumController(ids(3), ["x"] * 3, 1, world_size=2, rank=2)
