"""``RecDataModule``: a release (RecBench+ or the embedded synthetic world) → tasks → splits → loaders.

The training loader is driven by the online curriculum (:mod:`rerec.data.curriculum`): its order and
active set change at epoch boundaries from the policy's rollout statistics, and its state is part of every
checkpoint. Batches are lists of :class:`~rerec.data.tasks.RecTask`; the policy module renders and
tokenises the prompts once (it owns the tokenizer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader

from rerec.data.curriculum import CurriculumConfig, CurriculumController, CurriculumDataModuleMixin
from rerec.data.kg_input import item_attributes
from rerec.data.contract import RecData
from rerec.data.prompts import PromptConfig
from rerec.data.recbench import load_release
from rerec.data.records import QueryType, Release
from rerec.data.splits import split_queries
from rerec.data.synthetic import SyntheticWorldConfig, write_world
from rerec.data.tasks import RecTask, build_candidate_tasks, build_open_tasks

log = logging.getLogger("rerec.data")


class TaskBatch:
    """A batch of tasks: iterable, indexable and sized like a list, but no ``list``, ``Sequence`` or
    dataclass, so Lightning leaves it alone. Its ``bf16-true``/``16-true`` precision plugins cast every
    batch with ``apply_to_collection``, which rebuilds each dataclass field by field and refuses a frozen
    one (``RecTask``): with a plain list the first training step failed. A batch holds no tensor to cast.
    """

    __slots__ = ("tasks",)

    def __init__(self, tasks: Iterable[RecTask]) -> None:
        self.tasks = list(tasks)

    def __iter__(self) -> Iterator[RecTask]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int | slice) -> Any:
        return self.tasks[index]

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (TaskBatch, list)) else NotImplemented

    def __repr__(self) -> str:
        return f"TaskBatch({self.tasks!r})"


def collate_tasks(batch: list[RecTask]) -> TaskBatch:
    """Batches stay tasks (a :class:`TaskBatch`): prompts are tokenised (once) by the policy module."""
    return TaskBatch(batch)


class RecDataModule(CurriculumDataModuleMixin, L.LightningDataModule):
    """Recommendation tasks for RL fine-tuning and evaluation, with the online curriculum.

    Args:
        root: Folder of a RecBench+ release holding ``<domain>/`` (the user's download). ``null``: the
            embedded synthetic world, generated into ``world_dir``.
        domain: ``movie`` or ``book``.
        synthetic: Size and seed of the synthetic world (used when ``root`` is null).
        world_dir: Where the synthetic world is written (reused when its config is unchanged).
        task: ``candidate`` (the paper's: pick one of N candidates) or ``open`` (list up to K titles).
        num_candidates: N, candidates per prompt (truth + N−1 negatives).
        negatives: ``random`` or ``hard`` (sharing attributes with the truth, or from the user's history).
        prompt: How prompts are written.
        query_types: Train/evaluate only these query types (default: all five).
        test_fraction: Share of each query type held out for testing.
        val_fraction: Share of the remaining queries of each type used for validation.
        warm_start_fraction: Share of the training split (per query type) kept for the supervised warm
            start and left out of RL, so RL learns on queries the warm start has not memorised
            (0 = RL and warm start share all training queries).
        max_train_queries: Cap on the RL training tasks (round-robin over query types; ``null`` = all).
        max_eval_queries: Cap on validation and test tasks each (``null`` = all).
        batch_size: Prompts per RL step (B); each gets ``num_generations`` rollouts.
        eval_batch_size: Rows per evaluation generate call: prompts for greedy answers, prompts × samples
            for the sampled evaluation (``ReRecPolicy.eval_samples``).
        on_error: ``raise`` on malformed release input, or ``skip`` it (counted and logged).
        match_threshold: Fuzzy title-matching threshold in (0, 1] (default 0.8 movie, 0.65 book); the one
            matcher built with it serves ground truth, rewards and evaluation alike.
        curriculum: Online curriculum settings (``mode: static`` turns it off for ablations).
        seed: Seed of the splits and candidate negatives (fixed across RL seeds, so runs compare on the
            same held-out queries).
        order_seed: Seed of the training order (curriculum tie-breaks, static shuffles); ``null`` = the
            run's ``seed_everything`` (so RL seeds also vary the data order), else ``seed``.
    """

    def __init__(
        self,
        root: str | None = None,
        domain: Literal["movie", "book"] = "movie",
        synthetic: SyntheticWorldConfig | None = None,
        world_dir: str = ".cache/rerec/world",
        task: Literal["candidate", "open"] = "candidate",
        num_candidates: int = 20,
        negatives: Literal["random", "hard"] = "random",
        prompt: PromptConfig | None = None,
        query_types: list[str] | None = None,
        test_fraction: float = 0.3,
        val_fraction: float = 0.15,
        warm_start_fraction: float = 0.5,
        max_train_queries: int | None = None,
        max_eval_queries: int | None = None,
        batch_size: int = 8,
        eval_batch_size: int = 64,
        on_error: Literal["raise", "skip"] = "raise",
        match_threshold: float | None = None,
        curriculum: CurriculumConfig | None = None,
        seed: int = 0,
        order_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.domain = domain
        self.synthetic = synthetic or SyntheticWorldConfig()
        self.world_dir = world_dir
        self.task = task
        self.num_candidates = num_candidates
        self.negatives = negatives
        self.prompt = prompt or PromptConfig()
        self.query_types = [QueryType(t).value for t in query_types] if query_types else None
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction
        if not 0 <= warm_start_fraction < 1:
            raise ValueError(f"warm_start_fraction must be in [0, 1), got {warm_start_fraction}")
        self.warm_start_fraction = warm_start_fraction
        self.max_train_queries = max_train_queries
        self.max_eval_queries = max_eval_queries
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.on_error = on_error
        self.match_threshold = match_threshold
        self.curriculum = curriculum or CurriculumConfig()
        self.seed = seed
        self.order_seed = order_seed
        self.release: Release | None = None
        self.data: RecData | None = None
        self.stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ building
    @property
    def is_synthetic(self) -> bool:
        return self.root is None

    def load(self) -> RecData:
        """Read the release and build the :class:`~rerec.data.contract.RecData` the policy takes
        (idempotent)."""
        if self.data is not None:
            return self.data
        root = Path(write_world(self.world_dir, self.synthetic)).parent if self.is_synthetic else Path(self.root)
        release = load_release(root, self.domain, on_error=self.on_error, match_threshold=self.match_threshold)
        self.release = release
        attributes = item_attributes(release.triples)
        queries = release.queries
        if self.query_types:
            queries = [q for q in queries if q.query_type.value in self.query_types]
        splits = split_queries(queries, self.test_fraction, self.val_fraction, self.seed)
        if self.warm_start_fraction:
            # Carve the warm-start share out of train with the same stratified, seeded splitter.
            parts = split_queries(splits["train"], self.warm_start_fraction, 0.0, self.seed + 1)
            splits = {"warm_start": parts["test"], "train": parts["train"], "val": splits["val"], "test": splits["test"]}
        tasks: dict[str, list[RecTask]] = {}
        warm_start_tasks: list[RecTask] = []
        self.stats = {"release": release.stats, "queries": {k: len(v) for k, v in splits.items()}}
        for name, split in splits.items():
            if self.task == "candidate":
                built, stats = build_candidate_tasks(
                    split, list(release.items), attributes, self.num_candidates, self.negatives, self.seed
                )
            else:
                built, stats = build_open_tasks(split)
            if name == "warm_start" or (name == "train" and not self.warm_start_fraction):
                warm_start_tasks = built
            if name == "warm_start":
                self.stats["warm_start_tasks"] = {"count": len(built), **stats}
                continue
            limit = self.max_train_queries if name == "train" else self.max_eval_queries
            if limit is not None and len(built) > limit:
                built = _stratified_head(built, limit)
            tasks[name] = built
            self.stats[f"{name}_tasks"] = {"count": len(built), **stats}
            skipped = sum(stats.values())
            if skipped:
                log.warning("%s split: %d queries skipped while building tasks: %s", name, skipped, stats)
        log.info("tasks: %s", {k: len(v) for k, v in tasks.items()})
        if not tasks["train"]:
            raise ValueError(f"no training task could be built from {root} ({self.stats})")
        self.data = RecData(
            items=release.items, attributes=attributes, triples=release.triples,
            interactions=release.interactions, matcher=release.matcher, tasks=tasks,
            warm_start_tasks=warm_start_tasks, prompt=self.prompt, task=self.task,
            eval_batch_size=self.eval_batch_size, fingerprint=self._fingerprint(),
        )
        return self.data

    def _fingerprint(self) -> str:
        """Hash of the settings that decide the tasks and the prompt text (not the caps: a cap picks
        tasks, and whatever depends on which tasks were picked keys on them itself)."""
        settings = [
            asdict(self.synthetic), asdict(self.prompt), self.root, self.domain, self.task, self.num_candidates,
            self.negatives, self.seed, self.test_fraction, self.val_fraction, self.warm_start_fraction,
            self.query_types,
        ]
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def setup(self, stage: str) -> None:
        self.load()
        if stage == "fit" and self.curriculum_controller is None:
            train = self.data.tasks["train"]
            self.attach_curriculum(
                CurriculumController(
                    [t.query_id for t in train], [t.query_type for t in train],
                    self.batch_size, self.curriculum, self._order_seed(),
                )
            )

    def _order_seed(self) -> int:
        if self.order_seed is not None:
            return self.order_seed
        return int(os.environ.get("PL_GLOBAL_SEED", self.seed))  # set by seed_everything

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        return self.curriculum_dataloader(self.load().tasks["train"], collate_fn=collate_tasks)

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.load().tasks[split], batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate_tasks)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


def _stratified_head(tasks: list[RecTask], limit: int) -> list[RecTask]:
    """The first ``limit`` tasks taking query types round-robin (so a cap keeps every type present)."""
    by_type: dict[str, list[RecTask]] = {}
    for t in tasks:
        by_type.setdefault(t.query_type, []).append(t)
    out: list[RecTask] = []
    queues = [list(v) for _, v in sorted(by_type.items())]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out
