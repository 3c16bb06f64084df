"""``RecData``: everything the policy and the graph reward scorer take from the data, as one typed object.

The data module builds it once (:meth:`rerec.data.datamodule.RecDataModule.load`); the policy, its reward
components and the graph scorer read only this, never the data module's other attributes. A data
module for another dataset plugs in with a ``load()`` method that returns this type (the policy calls
``trainer.datamodule.load()``; docs/architecture.md, "Data contract").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rerec.data.matching import TitleMatcher
from rerec.data.prompts import PromptConfig
from rerec.data.records import Interactions, Item, Triple
from rerec.data.tasks import RecTask

Attributes = dict[int, set[tuple[str, str]]]


@dataclass(frozen=True)
class RecData:
    """The catalog, its knowledge, the tasks per split and how prompts are written.

    Attributes:
        items: The catalog, item id → :class:`~rerec.data.records.Item`.
        attributes: Item id → its ``(relation, value)`` facts (the item–attribute graph's neighbourhoods).
        triples: The item–attribute facts the graph scorer is built from.
        interactions: User–item interactions (PAS's LightGCN), ``None`` when the release has none.
        matcher: The one catalog title matcher used for ground truth, rewards, evaluation and prediction.
        tasks: Tasks per split: ``train`` (RL), ``val`` and ``test``.
        warm_start_tasks: Tasks of the supervised warm start (disjoint from RL's when carved out).
        prompt: How prompts are written (also read by the warm start's traces).
        task: ``candidate`` (one title from the prompt's list) or ``open`` (up to ``prompt.open_k`` titles).
        eval_batch_size: Rows per evaluation generate call.
        fingerprint: Hash of every data setting that changes the prompts or the tasks; caches that
            depend on the text the model sees (the warm start) key on it.
    """

    items: dict[int, Item]
    attributes: Attributes
    triples: list[Triple]
    interactions: Interactions | None
    matcher: TitleMatcher
    tasks: dict[str, list[RecTask]]
    warm_start_tasks: list[RecTask]
    prompt: PromptConfig
    task: Literal["candidate", "open"]
    eval_batch_size: int
    fingerprint: str

    @property
    def titles_per_answer(self) -> int:
        """Most titles read from one answer: 1 in the candidate task, ``prompt.open_k`` in the open task."""
        return 1 if self.task == "candidate" else self.prompt.open_k

    @property
    def answer_format(self) -> str:
        """How answers are read (:func:`rerec.data.answer.parse_answer`): ``prompt.answer_format`` in the
        open task (``"boxed"`` or ``"sep"``), always ``"boxed"`` in the candidate task."""
        return "boxed" if self.task == "candidate" else self.prompt.answer_format
