"""The rollout reward: read each completion once (parse, match), then sum the weighted components.

:meth:`RecReward.read` is the one path that parses an answer and matches its titles to catalog items;
training, evaluation, prediction and the benchmarks all go through it. :meth:`RecReward.__call__` adds the
reward: ``Σ weight · component`` over the configured :mod:`~rerec.rl.reward_components`.

In the candidate task the prompt asks for one of the listed candidates; with ``require_candidate`` an
answer that names none of them (after title matching) counts as no answer: penalties, no graph partial
credit. An off-list title is a failure to follow the task, not a near-miss, and without this rule the
graph scores would reward recalling catalog items similar to the truth that can never be right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rerec.data.answer import ANSWER_FORMATS, ANSWER_READINGS, AnswerFormat, AnswerReading, read_answer
from rerec.data.contract import RecData
from rerec.data.matching import TitleMatcher
from rerec.data.records import Item
from rerec.data.tasks import RecTask
from rerec.eval.metrics import ndcg_at_k
from rerec.rl.reward_components import AnswerBatch, RewardComponent


@dataclass
class RewardConfig:
    """What the reward components share.

    Args:
        k: Cut-off of NDCG@K and of the graph scores (1 for the candidate task: accuracy).
        require_candidate: Candidate task only: an answer that is not one of the prompt's candidates
            counts as no answer (penalties, no graph partial credit; RAAE still lowers the segments that
            argue for it). Off by default (the paper's reward); for a policy that answers with recalled
            off-list titles. Ignored by the open task.
        answer_reading: ``strict`` reads only the format the prompt asks for (``\\boxed{}``, or ``[SEP]``
            in the open task with ``prompt.answer_format: sep``). ``lenient`` also reads what instruct
            models write instead — a box, a ``[SEP]`` list, a bulleted or numbered list, titles one per
            line (:func:`rerec.data.answer.read_answer`) — so a model that answers in a list still has its
            recommendation scored (NDCG, QAS, PAS); the format reward stays for the asked format only.
            Evaluation and prediction read answers the same way.
    """

    k: int = 1
    require_candidate: bool = False
    answer_reading: AnswerReading = "strict"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"reward.k must be >= 1, got {self.k}")
        if self.answer_reading not in ANSWER_READINGS:
            raise ValueError(f"reward.answer_reading must be one of {ANSWER_READINGS}, got {self.answer_reading!r}")


@dataclass
class ScoredRollouts:
    """Rewards and what was read from each completion (one entry per rollout row).

    Attributes:
        total: (N,) total reward.
        components: Raw value of each computed component, each (N,), keyed by component name.
        ndcg: (N,) NDCG@K of the answer (0 when it does not count): the curriculum's difficulty signal,
            whatever the reward's components.
        parsed: Parsed titles per rollout, ``None`` when unparsable.
        predicted_ids: Matched catalog id per parsed title (−1 unmatched).
        match_kinds: Kind of match per parsed title (``candidate`` when taken from the prompt's list).
        correct: Whether the top recommendation is a ground-truth item.
        off_candidate: Whether a parsed answer names no candidate of the prompt (candidate task).
        wrong_titles: The recommended titles that are not ground truth (what RAAE penalises).
        as_asked: Whether the answer was written in the format the prompt asked for (always equal to
            "parsed" with ``reward.answer_reading: strict``).
    """

    total: torch.Tensor
    components: dict[str, torch.Tensor]
    ndcg: torch.Tensor
    parsed: list[list[str] | None]
    predicted_ids: list[list[int]]
    match_kinds: list[list[str]]
    correct: list[bool]
    wrong_titles: list[list[str]] = field(default_factory=list)
    off_candidate: list[bool] = field(default_factory=list)
    as_asked: list[bool] = field(default_factory=list)


class RecReward:
    """Reads and scores completions of recommendation tasks.

    Args:
        config: What the components share (K, ``require_candidate``).
        items: The catalog (candidate titles are looked up exactly before the fuzzy catalog matcher).
        matcher: Catalog title matcher for titles not written exactly as a candidate.
        components: The reward's terms, already set up (:meth:`RewardComponent.setup`); those of weight 0
            are skipped. ``None``/empty: reading only (evaluation).
        max_titles: Most titles read from one answer: 1 for the candidate task, K for the open task.
        answer_format: How answers are written (:func:`~rerec.data.answer.parse_answer`): ``"boxed"``, or
            ``"sep"`` for an open task prompted for ``[SEP]``-separated titles; the data contract's
            :attr:`~rerec.data.contract.RecData.answer_format` (see :meth:`for_data`).
    """

    def __init__(
        self,
        config: RewardConfig,
        items: dict[int, Item],
        matcher: TitleMatcher,
        components: Sequence[RewardComponent] | None = None,
        max_titles: int | None = 1,
        *,
        answer_format: AnswerFormat = "boxed",
    ) -> None:
        self.config = config
        self.items = items
        self.matcher = matcher
        self.components = [c for c in components or [] if c.weight != 0]
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"reward components must have distinct names, got {names}")
        self.max_titles = max_titles
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
        self.answer_format = answer_format

    @classmethod
    def for_data(
        cls, config: RewardConfig, data: RecData, components: Sequence[RewardComponent] | None = None
    ) -> RecReward:
        """The reward for ``data``'s task: its catalog and matcher, as many titles per answer as its
        prompt asks for, read in its answer format."""
        return cls(config, data.items, data.matcher, components, data.titles_per_answer,
                   answer_format=data.answer_format)

    def match(self, titles: Sequence[str], task: RecTask) -> tuple[list[int], list[str]]:
        """Catalog ids and match kinds of ``titles``.

        Order: a candidate's exact title (kind ``candidate``); else the catalog matcher; and when that finds
        no item, or an item that is not a candidate through a non-exact match, the candidates themselves
        are tried (same normalised name with a compatible year, then fuzzy), so that "Hamlet" names the
        listed "Hamlet (1996)" rather than the catalog's first "Hamlet (1990)". An exact catalog title is
        taken at its word, even when a listed remake shares its name.
        """
        by_title = {self.items[i].title: i for i in task.candidate_ids}
        ids, kinds = [], []
        for title in titles:
            if title in by_title:
                ids.append(by_title[title])
                kinds.append("candidate")
                continue
            m = self.matcher.match(title)
            item, kind = (-1 if m.item_id is None else m.item_id), m.kind
            if task.candidate_ids and item not in task.candidate_ids and kind != "exact":
                listed = self.matcher.match_among(title, task.candidate_ids)
                if listed.item_id is not None:
                    item, kind = listed.item_id, listed.kind
            ids.append(item)
            kinds.append(kind)
        return ids, kinds

    def read(self, texts: Sequence[str], tasks: Sequence[RecTask], device: torch.device | str = "cpu") -> AnswerBatch:
        """Parse every completion and match its titles (no scoring)."""
        parsed, predicted, kinds, scorable, as_asked = [], [], [], [], []
        for text, task in zip(texts, tasks, strict=True):
            titles, asked = read_answer(text, self.max_titles, self.answer_format, self.config.answer_reading)
            parsed.append(titles)
            as_asked.append(asked)
            ids, match_kinds = self.match(titles, task) if titles is not None else ([], [])
            predicted.append(ids)
            kinds.append(match_kinds)
            scorable.append(titles is not None and not (self.config.require_candidate and self._off_list(ids, task)))
        return AnswerBatch(texts, tasks, parsed, predicted, kinds, scorable, self.config.k, device, as_asked=as_asked)

    def _off_list(self, ids: list[int], task: RecTask) -> bool:
        """Candidate task: the top answer is none of the prompt's candidates."""
        return self.max_titles == 1 and bool(task.candidate_ids) and ids[0] not in task.candidate_ids

    def __call__(self, texts: Sequence[str], tasks: Sequence[RecTask], device: torch.device | str = "cpu", *,
                 completion_lengths: torch.Tensor | None = None,
                 max_completion_length: int | None = None) -> ScoredRollouts:
        """Read ``texts[i]`` as an answer to ``tasks[i]`` and score it; returns :class:`ScoredRollouts`.
        ``completion_lengths`` (tokens per completion) and ``max_completion_length`` (their budget) reach
        the components through :class:`AnswerBatch` (length-based components need them)."""
        batch = self.read(texts, tasks, device)
        batch.completion_lengths, batch.max_completion_length = completion_lengths, max_completion_length
        components: dict[str, torch.Tensor] = {}
        total = torch.zeros(len(batch), dtype=torch.float32, device=device)
        for i, component in enumerate(self.components):
            value = component(batch)
            if tuple(value.shape) != (len(batch),):
                raise ValueError(f"reward component {component.name!r} returned shape {tuple(value.shape)}, "
                                 f"expected ({len(batch)},)")
            components[component.name] = value.float()
            total = component.weight * value if i == 0 else total + component.weight * value
        correct, wrong, off, ndcg = [], [], [], []
        for titles, ids, task, ok in zip(batch.parsed, batch.predicted_ids, tasks, batch.scorable):
            truth = set(task.answer_ids)
            correct.append(bool(ids) and ids[0] in truth)
            wrong.append([t for t, i in zip(titles, ids) if i not in truth] if titles is not None else [])
            off.append(titles is not None and self._off_list(ids, task))
            ndcg.append(ndcg_at_k(ids, truth, self.config.k) if ok else 0.0)
        return ScoredRollouts(
            total=total, components=components, ndcg=batch.values(ndcg), parsed=batch.parsed,
            predicted_ids=batch.predicted_ids, match_kinds=batch.match_kinds, correct=correct,
            wrong_titles=wrong, off_candidate=off, as_asked=list(batch.as_asked),
        )
