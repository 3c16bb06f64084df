"""Online curriculum: difficulty from the policy's own rollouts, an epoch scheduler, a
resumable rank-sharded sampler.

How it works
------------
* :meth:`CurriculumController.report` is called once per training batch (by
  :class:`~rerec.data.curriculum_callback.CurriculumCallback`, with the statistics the policy's training
  step returns) with, per query, the mean NDCG@K of its G rollouts and the group's reward std.
  ``difficulty = 1 − mean NDCG@K`` from the latest time a query was trained on; a never-seen query
  counts as 1.0. Under DDP ``report`` gathers the batch statistics of every rank
  (``all_gather_object``), so all ranks hold identical state at every step and a checkpoint written by
  rank 0 holds every rank's statistics.
* ``report`` is also the position counter: the position inside the epoch advances only by batches that
  the training step really consumed, never by what the DataLoader prefetched.
* At an epoch boundary the next epoch's order is built: online mode drops queries with difficulty
  below ``tau``, lets dropped queries return after ``return_after`` epochs, falls back to the whole
  training set when fewer than ``min_active`` examples would remain, and orders the rest (easy → hard by
  default). Ties are broken by a key hashed from ``(seed, epoch, query_id)``, so no RNG state is needed
  to reproduce an order. Static mode serves a seeded shuffle of everything every epoch.
* Sharding under DDP: the epoch's global order is padded cyclically (repeating its first examples) to a
  multiple of ``world_size`` and rank ``r`` serves ``padded[r::world_size]``; every rank serves the same
  number of examples, and the union of all ranks' i-th batches is the i-th contiguous chunk of the order.

Integration with Lightning 2.6
------------------------------
* Data module: inherit :class:`CurriculumDataModuleMixin` before ``LightningDataModule``; build the
  controller in ``setup("fit")`` and pass it to :meth:`~CurriculumDataModuleMixin.attach_curriculum`;
  return :meth:`~CurriculumDataModuleMixin.curriculum_dataloader` from ``train_dataloader``. The mixin's
  ``state_dict``/``load_state_dict`` put the controller state into every checkpoint.
* Trainer: ``reload_dataloaders_every_n_epochs=1`` (online mode) — the epoch length changes with the
  active set, and Lightning sizes an epoch (and its end-of-epoch validation) from ``len(dataloader)``
  taken when the loader is (re)built.
* Policy: ``training_step`` returns ``{"group_stats": GroupStats(...)}``; the
  :class:`~rerec.data.curriculum_callback.CurriculumCallback` that ``attach_curriculum`` registers calls
  ``report`` with them and applies the epoch boundary (``on_epoch_end``).
* Mid-epoch resume: Lightning re-creates the train DataLoader and its iterator after restoring the data
  module's state, so :class:`CurriculumSampler` simply starts from the restored position. If a checkpoint
  was taken after the last batch of an epoch but before the boundary update (Lightning then skips that
  epoch's ``on_train_epoch_end`` on resume), the sampler applies the pending boundary itself the next
  time the DataLoader asks for its length or an iterator.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

log = logging.getLogger(__name__)

STATE_VERSION = 1
_NDCG_SLACK = 1e-6  # float error tolerated on NDCG values outside [0, 1] before they count as bad input


@dataclass
class CurriculumConfig:
    """Online curriculum of the training queries.

    Args:
        mode: ``online`` drops mastered queries and orders the rest by difficulty at every epoch
            boundary; ``static`` (ablation: no curriculum) serves a seeded shuffle of the whole training
            set every epoch and never drops anything. Online epochs shrink: Lightning stops with an
            error once an integer ``trainer.val_check_interval`` exceeds an epoch's batches, unless
            ``trainer.check_val_every_n_epoch`` is ``null`` (the interval then counts all batches);
            per-epoch or fractional intervals are re-sized every epoch.
        tau: Mastery threshold: at an epoch boundary a query whose difficulty ``1 − mean NDCG@K`` (from
            the last time it was trained on) is below ``tau`` is dropped. Reference 0.1.
        order: Order of the active queries in the next epoch: ``easy_to_hard`` (reference),
            ``hard_to_easy``, or ``random`` (seeded shuffle; only the dropping is kept).
        return_after: A dropped query comes back (whatever its stale difficulty) after it has been left
            out for this many epochs; ``None`` keeps mastered queries out for good.
        min_active: Fewest examples an epoch may have; if fewer would remain after dropping, the epoch
            falls back to the full training set. ``None`` means one global batch (batch size × number of
            processes).
        shuffle_first_epoch: The first epoch (every difficulty 1.0) serves a seeded shuffle; ``False``
            serves it in dataset order.
    """

    mode: Literal["online", "static"] = "online"
    tau: float = 0.1
    order: Literal["easy_to_hard", "hard_to_easy", "random"] = "easy_to_hard"
    return_after: int | None = None
    min_active: int | None = None
    shuffle_first_epoch: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("online", "static"):
            raise ValueError(f"CurriculumConfig.mode must be 'online' or 'static', got {self.mode!r}")
        if self.order not in ("easy_to_hard", "hard_to_easy", "random"):
            raise ValueError(
                "CurriculumConfig.order must be 'easy_to_hard', 'hard_to_easy' or 'random', "
                f"got {self.order!r}"
            )
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"CurriculumConfig.tau must be in [0, 1], got {self.tau}")
        if self.return_after is not None and self.return_after < 1:
            raise ValueError(f"CurriculumConfig.return_after must be >= 1 or None, got {self.return_after}")
        if self.min_active is not None and self.min_active < 1:
            raise ValueError(f"CurriculumConfig.min_active must be >= 1 or None, got {self.min_active}")


def _type_name(query_type: Any) -> str:
    """``QueryType.EXPLICIT`` and ``"explicit"`` both give ``"explicit"``."""
    return str(query_type.value) if isinstance(query_type, Enum) else str(query_type)


def _as_floats(values: Sequence[float] | torch.Tensor | np.ndarray) -> list[float]:
    """Plain floats on the host (tensors may live on an accelerator)."""
    if isinstance(values, torch.Tensor):
        return [float(v) for v in values.detach().reshape(-1).float().cpu().tolist()]
    return [float(v) for v in values]


def _tie_keys(seed: int, epoch: int, query_ids: Sequence[str]) -> np.ndarray:
    """A reproducible pseudo-random uint64 per query for (seed, epoch), independent of list order."""
    prefix = f"{seed}\x1f{epoch}\x1f".encode()
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(prefix + q.encode(), digest_size=8).digest(), "little")
            for q in query_ids
        ),
        dtype=np.uint64,
        count=len(query_ids),
    )


class CurriculumController:
    """Curriculum state shared by the data module (sampler) and the policy (statistics).

    Every rank holds an identical copy. All state lives here; samplers are stateless views.

    Args:
        query_ids: Query id of each training example (dataset index → id). Several examples may share a
            query id; they then share its difficulty.
        query_types: Query type of each example (``QueryType`` or its string value), for per-type metrics.
        batch_size: Per-rank batch size B of the train DataLoader.
        config: Curriculum options; defaults to ``CurriculumConfig()``.
        seed: Seed of the tie-breaking keys and of the static / first-epoch shuffles.
        world_size: Number of processes; defaults to ``torch.distributed``'s when initialised, else 1.
        rank: This process's rank; defaults to ``torch.distributed``'s when initialised, else 0.
    """

    def __init__(
        self,
        query_ids: Sequence[str],
        query_types: Sequence[Any],
        batch_size: int,
        config: CurriculumConfig | None = None,
        seed: int = 0,
        *,
        world_size: int | None = None,
        rank: int | None = None,
    ) -> None:
        if len(query_ids) == 0:
            raise ValueError("CurriculumController: the training set is empty")
        if len(query_types) != len(query_ids):
            raise ValueError(
                f"CurriculumController: {len(query_ids)} query_ids but {len(query_types)} query_types"
            )
        if batch_size < 1:
            raise ValueError(f"CurriculumController: batch_size must be >= 1, got {batch_size}")
        distributed = dist.is_available() and dist.is_initialized()
        if world_size is None:
            world_size = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        self.world_size, self.rank = int(world_size), int(rank)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"CurriculumController: rank {self.rank} outside world_size {self.world_size}")
        self.config = config if config is not None else CurriculumConfig()
        self.batch_size = int(batch_size)
        self.seed = int(seed)

        self._query_ids = [str(q) for q in query_ids]
        self._types = [_type_name(t) for t in query_types]
        uid_pos: dict[str, int] = {}
        self._uid_of_index = np.array(
            [uid_pos.setdefault(q, len(uid_pos)) for q in self._query_ids], dtype=np.int64
        )
        self._uid_pos = uid_pos
        types = np.array(self._types)
        self._type_indices = {t: np.flatnonzero(types == t) for t in sorted(set(self._types))}
        # Per unique query: mean NDCG@K and reward std of the last training, and its epoch (-1: never).
        self._ndcg = np.full(len(uid_pos), np.nan)
        self._std = np.full(len(uid_pos), np.nan)
        self._last_epoch = np.full(len(uid_pos), -1, np.int64)

        self._epoch = 0
        self._position = 0
        self._history: list[dict[str, Any]] = []
        self._order = np.arange(0)
        self._fallback = False
        self._shard_cache: np.ndarray | None = None
        self._schedule()

    # ------------------------------------------------------------------ public read-only views
    @property
    def epoch(self) -> int:
        """Curriculum epoch being served (equals Lightning's ``current_epoch`` in a normal run)."""
        return self._epoch

    @property
    def position(self) -> int:
        """Examples of this rank's shard already consumed by training steps in this epoch."""
        return self._position

    @property
    def num_examples(self) -> int:
        """Size of the full training set (dataset length)."""
        return len(self._query_ids)

    @property
    def order(self) -> list[int]:
        """This epoch's global order of dataset indices (before sharding)."""
        return self._order.tolist()

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per scheduled epoch: ``{"epoch", "active", "dropped", "mean_difficulty"}``."""
        return [dict(h) for h in self._history]

    def difficulty(self, query_id: str) -> float:
        """Current difficulty of one query (1.0 when never trained on)."""
        ndcg = self._ndcg[self._uid_pos[query_id]]
        return 1.0 if math.isnan(ndcg) else 1.0 - float(ndcg)

    def difficulties(self) -> list[float]:
        """Current difficulty of every training query, in dataset order (1.0 when never trained on):
        what a per-epoch difficulty histogram shows."""
        return self._index_difficulty().tolist()

    def shard(self) -> list[int]:
        """This rank's dataset indices for the whole current epoch (the sampler serves its tail)."""
        return self._shard().tolist()

    def __len__(self) -> int:
        """Length of this rank's shard of the current epoch."""
        return len(self._shard())

    # ------------------------------------------------------------------ the policy's side
    def report(
        self,
        query_ids: Sequence[str],
        mean_ndcg: Sequence[float] | torch.Tensor,
        reward_std: Sequence[float] | torch.Tensor,
    ) -> None:
        """Record one consumed training batch of this rank; call once per ``training_step``, on every rank.

        Args:
            query_ids: Query ids of the batch's B prompts, as served (any order).
            mean_ndcg: Per query, the mean NDCG@K of its G rollouts, in [0, 1].
            reward_std: Per query, the std of its group's rewards (informational; NaN allowed).

        Raises:
            ValueError: On every rank, when any rank passed mismatched lengths, NDCG outside [0, 1], or
                query ids that are not the next examples of its shard (wiring or resume error).
        """
        ids = [str(q) for q in query_ids]
        ndcg = _as_floats(mean_ndcg)
        std = _as_floats(reward_std)
        problems = self._check_batch(ids, ndcg, std)
        # Gather before raising so that a bad batch on one rank cannot leave the others in a collective.
        gathered = self._all_gather((ids, ndcg, std, problems))
        errors = [f"rank {r}: {p}" for r, (_, _, _, probs) in enumerate(gathered) for p in probs]
        if errors:
            raise ValueError("CurriculumController.report: " + "; ".join(errors))
        sizes = {len(g[0]) for g in gathered}
        if len(sizes) != 1:
            raise ValueError(
                f"CurriculumController.report: ranks reported different batch sizes {sorted(sizes)}"
            )
        for rank_ids, rank_ndcg, rank_std, _ in gathered:
            for q, v, s in zip(rank_ids, rank_ndcg, rank_std):
                u = self._uid_pos[q]
                self._ndcg[u] = min(max(v, 0.0), 1.0)
                self._std[u] = s
                self._last_epoch[u] = self._epoch
        self._position += len(ids)

    def _check_batch(self, ids: list[str], ndcg: list[float], std: list[float]) -> list[str]:
        if not (len(ids) == len(ndcg) == len(std)):
            return [f"{len(ids)} query_ids, {len(ndcg)} mean_ndcg, {len(std)} reward_std values"]
        problems = [
            f"mean_ndcg[{i}]={v} for query {q!r} is not in [0, 1]"
            for i, (q, v) in enumerate(zip(ids, ndcg))
            if not -_NDCG_SLACK <= v <= 1.0 + _NDCG_SLACK
        ]
        shard = self._shard()
        expected = shard[self._position : self._position + len(ids)]
        if len(expected) < len(ids):
            problems.append(
                f"batch of {len(ids)} reported at position {self._position} of an epoch shard of "
                f"{len(shard)} (epoch {self._epoch}); was the epoch boundary missed?"
            )
        elif Counter(ids) != Counter(self._query_ids[i] for i in expected.tolist()):
            problems.append(
                f"query ids {ids[:4]}... are not the next examples served at position {self._position} of "
                f"epoch {self._epoch}; report() must be called exactly once per training batch with the "
                "batch's query ids, and the train DataLoader must use this controller's sampler"
            )
        return problems

    def _all_gather(self, payload: Any) -> list[Any]:
        if self.world_size == 1:
            return [payload]
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                f"CurriculumController was built for world_size={self.world_size} but torch.distributed is "
                "not initialised; build it in the data module's setup(), after the process group exists"
            )
        if dist.get_world_size() != self.world_size:
            raise RuntimeError(
                f"CurriculumController world_size={self.world_size} != torch.distributed world size "
                f"{dist.get_world_size()}"
            )
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, payload)
        return out

    # ------------------------------------------------------------------ epoch boundary
    def epoch_complete(self, trainer: Any | None = None) -> bool:
        """Whether this epoch has been fully consumed (its boundary update is due).

        Without a trainer: every example of the shard was reported. With a Lightning trainer, an epoch
        that Lightning ended early on purpose (``limit_train_batches``) also counts; one cut short by
        ``max_steps`` or ``should_stop`` does not (Lightning still calls ``on_train_epoch_end`` then).
        """
        if self._position >= len(self._shard()):
            return True
        if trainer is None or self._position == 0:
            return False
        epoch_loop = trainer.fit_loop.epoch_loop
        return bool(epoch_loop.batch_progress.current.ready >= trainer.num_training_batches)

    def on_epoch_end(self, trainer: Any | None = None) -> bool:
        """Apply the epoch boundary if the epoch is complete: update difficulties' schedule for the next
        epoch (drop / return / fallback / order). Safe to call more than once and on interrupted epochs.

        Call on every rank (it is a local, deterministic computation: the statistics were already
        gathered by :meth:`report`). Returns True when a boundary was applied.
        """
        if not self.epoch_complete(trainer):
            return False
        self._advance_epoch()
        return True

    def _ensure_epoch(self) -> None:
        """Apply a boundary left pending by a checkpoint taken after an epoch's last batch."""
        if self._position >= len(self._shard()):
            self._advance_epoch()

    def _advance_epoch(self) -> None:
        self._epoch += 1
        self._position = 0
        self._schedule()

    def _index_difficulty(self) -> np.ndarray:
        ndcg = self._ndcg[self._uid_of_index]
        return np.where(np.isnan(ndcg), 1.0, 1.0 - ndcg)

    def _min_active(self) -> int:
        if self.config.min_active is not None:
            return self.config.min_active
        return self.batch_size * self.world_size

    def _schedule(self) -> None:
        """Build ``self._order`` for ``self._epoch`` from the current statistics and log it in history."""
        cfg, n = self.config, self.num_examples
        index = np.arange(n)
        difficulty = self._index_difficulty()
        if self._epoch == 0 and not cfg.shuffle_first_epoch:
            key = index.astype(np.uint64)
        else:
            key = _tie_keys(self.seed, self._epoch, self._query_ids)
        active = np.ones(n, dtype=bool)
        self._fallback = False
        if cfg.mode == "online":
            active = difficulty >= cfg.tau
            if cfg.return_after is not None:
                last = self._last_epoch[self._uid_of_index]
                active |= (last >= 0) & (self._epoch - last - 1 >= cfg.return_after)
            if active.sum() < min(self._min_active(), n):
                log.info(
                    "curriculum epoch %d: %d examples left (< %d), falling back to the full training set",
                    self._epoch, int(active.sum()), self._min_active(),
                )
                active = np.ones(n, dtype=bool)
                self._fallback = True
        chosen = index[active]
        if cfg.mode == "static" or cfg.order == "random":
            perm = np.lexsort((chosen, key[chosen]))
        elif cfg.order == "easy_to_hard":
            perm = np.lexsort((chosen, key[chosen], difficulty[chosen]))
        else:
            perm = np.lexsort((chosen, key[chosen], -difficulty[chosen]))
        self._order = chosen[perm]
        self._shard_cache = None
        self._history.append(
            {
                "epoch": self._epoch,
                "active": int(len(self._order)),
                "dropped": int(n - len(self._order)),
                "mean_difficulty": float(difficulty.mean()),
            }
        )

    def _shard(self) -> np.ndarray:
        if self._shard_cache is None:
            per_rank = math.ceil(len(self._order) / self.world_size)
            padded = np.resize(self._order, per_rank * self.world_size)  # cyclic padding
            self._shard_cache = padded[self.rank :: self.world_size]
        return self._shard_cache

    # ------------------------------------------------------------------ data module side
    def sampler(self) -> CurriculumSampler:
        """A sampler of this rank's shard of the epoch, for ``DataLoader(batch_size=B, sampler=...)``."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() != self.world_size:
            raise RuntimeError(
                f"CurriculumController world_size={self.world_size} != torch.distributed world size "
                f"{dist.get_world_size()}; build it in the data module's setup()"
            )
        return CurriculumSampler(self)

    def metrics(self) -> dict[str, float]:
        """Scalars to log: ``curriculum/{epoch,active,dropped,fallback,mean_difficulty,mean_reward_std}``
        and ``curriculum/difficulty/<type>``; difficulties are averaged over the whole training set
        (never-seen = 1.0), ``active``/``dropped`` count the current epoch's examples."""
        difficulty = self._index_difficulty()
        seen_std = self._std[(self._last_epoch >= 0) & ~np.isnan(self._std)]
        out = {
            "curriculum/epoch": float(self._epoch),
            "curriculum/active": float(len(self._order)),
            "curriculum/dropped": float(self.num_examples - len(self._order)),
            "curriculum/fallback": float(self._fallback),
            "curriculum/mean_difficulty": float(difficulty.mean()),
            "curriculum/mean_reward_std": float(seen_std.mean()) if seen_std.size else 0.0,
        }
        for name, idx in self._type_indices.items():
            out[f"curriculum/difficulty/{name}"] = float(difficulty[idx].mean())
        return out

    # ------------------------------------------------------------------ checkpointing
    def _fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self._query_ids).encode()).hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """The whole state as plain Python values (safe for ``torch.load(weights_only=True)``).

        No RNG state is needed: every random choice is a hash of ``(seed, epoch, query_id)``.
        """
        return {
            "version": STATE_VERSION,
            "num_examples": self.num_examples,
            "fingerprint": self._fingerprint(),
            "seed": self.seed,
            "world_size": self.world_size,
            "epoch": self._epoch,
            "position": self._position,
            "order": self._order.tolist(),
            "fallback": self._fallback,
            "ndcg": self._ndcg.tolist(),
            "reward_std": self._std.tolist(),
            "last_epoch": self._last_epoch.tolist(),
            "history": self.history,
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. The training set must be the same (same ids, same order).

        The configuration in use is kept (so e.g. ``tau`` may be changed for the rest of a run); the
        saved seed wins, so that future orders match the interrupted run.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"curriculum state: unsupported version {state.get('version')!r}")
        if state["num_examples"] != self.num_examples or state["fingerprint"] != self._fingerprint():
            raise ValueError(
                f"curriculum state does not match this training set: the checkpoint has "
                f"{state['num_examples']} examples (query-id fingerprint {state['fingerprint'][:12]}), "
                f"the data module built {self.num_examples} ({self._fingerprint()[:12]})"
            )
        if state["world_size"] != self.world_size and state["position"] > 0:
            raise ValueError(
                f"curriculum state was saved mid-epoch with world_size={state['world_size']}; it cannot "
                f"resume mid-epoch with world_size={self.world_size} (resume from an epoch-end checkpoint)"
            )
        order = np.asarray(state["order"], dtype=np.int64)
        if order.size == 0 or order.min() < 0 or order.max() >= self.num_examples:
            raise ValueError("curriculum state: 'order' holds indices outside the training set")
        position, shard_length = int(state["position"]), math.ceil(order.size / self.world_size)
        if not 0 <= position <= shard_length:
            raise ValueError(f"curriculum state: position {position} outside the shard (0..{shard_length})")
        if state["seed"] != self.seed:
            log.warning("curriculum state: using the checkpoint's seed %s, not %s", state["seed"], self.seed)
        self.seed = int(state["seed"])
        self._epoch = int(state["epoch"])
        self._order = order
        self._shard_cache = None
        self._fallback = bool(state["fallback"])
        self._ndcg = np.asarray(state["ndcg"], dtype=np.float64)
        self._std = np.asarray(state["reward_std"], dtype=np.float64)
        self._last_epoch = np.asarray(state["last_epoch"], dtype=np.int64)
        self._history = [dict(h) for h in state["history"]]
        self._position = position


class CurriculumSampler(DistributedSampler):
    """Stateless view of a :class:`CurriculumController`: this rank's shard of the current epoch, from the
    position reached by training (so a resumed run continues where the checkpoint was taken).

    It subclasses ``DistributedSampler`` only so that Lightning's ``use_distributed_sampler`` does not
    wrap it again: it already shards by rank. ``__len__`` is the whole epoch's shard length (Lightning's
    restored ``batch_idx`` counts the batches already done), ``__iter__`` yields the part not yet consumed.

    Args:
        controller: The curriculum whose state is served.
    """

    def __init__(self, controller: CurriculumController) -> None:
        # DistributedSampler.__init__ is skipped on purpose: it needs a dataset and fixes the length.
        self.controller = controller
        self.num_replicas = controller.world_size
        self.rank = controller.rank
        self.shuffle = False
        self.drop_last = False
        self.seed = controller.seed
        self.epoch = controller.epoch

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        """Examples this rank serves in the current epoch."""
        return len(self)

    @property
    def total_size(self) -> int:  # type: ignore[override]
        """Examples served by all ranks together in the current epoch (with padding)."""
        return len(self) * self.num_replicas

    def __len__(self) -> int:
        self.controller._ensure_epoch()
        return len(self.controller)

    def __iter__(self) -> Iterator[int]:
        self.controller._ensure_epoch()
        remaining = self.controller._shard()[self.controller.position :]
        return iter(remaining.tolist())

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start; the curriculum keeps its own epoch and only checks."""
        self.epoch = epoch
        if epoch != self.controller.epoch:
            log.warning(
                "curriculum epoch %d differs from the trainer's epoch %d (an epoch ended without its "
                "boundary, e.g. limit_train_batches with on_epoch_end not called, or a resume from an "
                "epoch-end checkpoint of a run stopped mid-epoch)", self.controller.epoch, epoch,
            )


class CurriculumDataLoader(DataLoader):
    """Train DataLoader over a :class:`CurriculumSampler`.

    Its ``state_dict``/``load_state_dict`` make Lightning treat it as resumable (no "dataloader is not
    resumable" warning on a mid-epoch resume). The curriculum itself is restored through the data
    module; on resume this loader only checks that it was, and fails loudly if not.
    """

    def state_dict(self) -> dict[str, int]:
        """Epoch and position of the curriculum when the checkpoint was taken."""
        controller = self._controller()
        return {"epoch": controller.epoch, "position": controller.position}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Check that the data module restored the curriculum to the checkpoint's epoch and position."""
        controller = self._controller()
        now = (controller.epoch, controller.position)
        saved = (int(state_dict["epoch"]), int(state_dict["position"]))
        # (e+1, 0) is the same point when the checkpoint was taken after epoch e's last batch and the
        # pending boundary has already been applied by the sampler.
        if now != saved and now != (saved[0] + 1, 0):
            raise RuntimeError(
                f"the checkpoint's train loader was at curriculum epoch {saved[0]}, position {saved[1]}, but "
                f"the curriculum is at epoch {now[0]}, position {now[1]}: the data module's state_dict / "
                "load_state_dict must save and restore the curriculum (CurriculumDataModuleMixin)"
            )

    def _controller(self) -> CurriculumController:
        assert isinstance(self.sampler, CurriculumSampler)
        return self.sampler.controller


def curriculum_of(trainer: Any) -> CurriculumController | None:
    """The controller of ``trainer.datamodule`` (None when there is no curriculum)."""
    controller = getattr(getattr(trainer, "datamodule", None), "curriculum_controller", None)
    return controller if isinstance(controller, CurriculumController) else None


class CurriculumDataModuleMixin:
    """Curriculum plumbing for a ``LightningDataModule``: checkpoint state and the train DataLoader.

    Use as ``class RecDataModule(CurriculumDataModuleMixin, LightningDataModule)`` (mixin first) and:

    * in ``setup("fit")``: ``self.attach_curriculum(CurriculumController(...))`` (a state loaded before
      this call is applied on attach);
    * in ``train_dataloader()``: ``return self.curriculum_dataloader(train_dataset, num_workers=...)``.

    ``state_dict``/``load_state_dict`` (Lightning hooks, called for every checkpoint and on resume) store
    the controller under the ``"curriculum"`` key, merged with the base class's state.
    """

    _curriculum: CurriculumController | None = None
    _pending_curriculum_state: dict[str, Any] | None = None

    @property
    def curriculum_controller(self) -> CurriculumController | None:
        """The attached controller, if any (not named ``curriculum``, which suits the config argument)."""
        return self._curriculum

    def attach_curriculum(self, controller: CurriculumController) -> None:
        """Use ``controller`` for training; applies a checkpoint state loaded before it existed, and
        registers :class:`~rerec.data.curriculum_callback.CurriculumCallback` with the trainer (first,
        so a checkpoint written at the same step already holds the step's statistics)."""
        from rerec.data.curriculum_callback import CurriculumCallback

        self._curriculum = controller
        if self._pending_curriculum_state is not None:
            controller.load_state_dict(self._pending_curriculum_state)
            self._pending_curriculum_state = None
        trainer = getattr(self, "trainer", None)
        if trainer is not None and not any(isinstance(c, CurriculumCallback) for c in trainer.callbacks):
            trainer.callbacks.insert(0, CurriculumCallback())

    def curriculum_dataloader(self, dataset: Dataset, **dataloader_kwargs: Any) -> DataLoader:
        """The train DataLoader: batch size and sampler from the curriculum, ``drop_last=False``.

        Raises:
            RuntimeError: No controller attached.
            ValueError: Conflicting DataLoader arguments, a dataset whose length is not the controller's,
                or (online mode) a trainer without ``reload_dataloaders_every_n_epochs=1``.
        """
        controller = self._curriculum
        if controller is None:
            raise RuntimeError("curriculum_dataloader: call attach_curriculum(...) in setup() first")
        clash = {"sampler", "batch_sampler", "shuffle", "batch_size", "drop_last"} & dataloader_kwargs.keys()
        if clash:
            raise ValueError(f"curriculum_dataloader: {sorted(clash)} are set by the curriculum")
        if len(dataset) != controller.num_examples:  # type: ignore[arg-type]
            raise ValueError(
                f"curriculum_dataloader: dataset has {len(dataset)} examples, "  # type: ignore[arg-type]
                f"the curriculum {controller.num_examples}"
            )
        trainer = getattr(self, "trainer", None)
        reload_every = getattr(trainer, "reload_dataloaders_every_n_epochs", 1)
        if trainer is not None and controller.config.mode == "online" and reload_every != 1:
            raise ValueError(
                "the online curriculum changes the epoch length at every epoch boundary: set "
                f"trainer.reload_dataloaders_every_n_epochs=1 (got {reload_every})"
            )
        return CurriculumDataLoader(
            dataset, batch_size=controller.batch_size, sampler=controller.sampler(), drop_last=False,
            **dataloader_kwargs,
        )

    def state_dict(self) -> dict[str, Any]:
        """Base state plus ``"curriculum"``: the controller's state (or one loaded but not attached yet)."""
        state = dict(super().state_dict())  # type: ignore[misc]
        if self._curriculum is not None:
            state["curriculum"] = self._curriculum.state_dict()
        elif self._pending_curriculum_state is not None:
            state["curriculum"] = self._pending_curriculum_state
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the controller (now, or when it is attached); other keys go to the base class."""
        rest = {k: v for k, v in state_dict.items() if k != "curriculum"}
        super().load_state_dict(rest)  # type: ignore[misc]
        state = state_dict.get("curriculum")
        if state is None:
            return
        if self._curriculum is not None:
            self._curriculum.load_state_dict(state)
        else:
            self._pending_curriculum_state = state
