"""Reward components: named, weighted terms of the rollout reward, each scoring a whole batch at once.

The total reward is ``Σ weight · component`` over the components configured as ``reward_funcs`` (the
shape of TRL's ``reward_funcs`` + ``reward_weights``, one object per term):

.. code-block:: yaml

    reward_funcs:
      - class_path: rerec.rl.reward_components.FormatReward
        init_args: {weight: 0.1}
      - class_path: my_package.MyReward      # any importable subclass of RewardComponent
        init_args: {weight: 0.5}

A component sees an :class:`AnswerBatch`: the completions, their tasks and what was read from them
(parsed titles, matched catalog ids, whether the answer counts as an answer at all). It returns one raw
value per rollout; the raw values are logged as ``rewards/<name>/mean`` and ``/std``. A component of
weight 0 is not computed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from rerec.data.tasks import RecTask
from rerec.eval.metrics import ndcg_at_k

__all__ = [
    "AnswerBatch", "FormatReward", "NDCGReward", "PASReward", "QASReward", "RewardComponent",
    "default_reward_components",
]


@dataclass
class AnswerBatch:
    """What was read from N completions, one entry per rollout row.

    Attributes:
        texts: The completions.
        tasks: The task each completion answers.
        parsed: Titles parsed from each answer, ``None`` when unparsable.
        predicted_ids: Catalog id per parsed title (−1: unmatched); empty when unparsable.
        match_kinds: How each title was matched (``candidate``, ``exact``, ``normalized``, ``fuzzy``,
            ``none``).
        scorable: Whether the answer counts as an answer: it parses and (with
            ``reward.require_candidate``, candidate task) names one of the prompt's candidates. An
            unscorable answer gets the penalties and no partial credit.
        k: Cut-off K of NDCG@K and of the graph scores' "first K predictions".
        device: Where component values are made.
        cache: Scratch space shared by the components of this batch (e.g. QAS and PAS come from one
            graph scorer call).
        as_asked: Whether each answer was written in the format the prompt asked for (``None``: every
            parsed answer was, as with ``reward.answer_reading: strict``).
        completion_lengths: (N,) generated tokens of each completion (EOS included) and
        max_completion_length: the budget they were generated under, when the caller scores rollouts
            (training does; reading for evaluation does not): for length-based components.
    """

    texts: Sequence[str]
    tasks: Sequence[RecTask]
    parsed: list[list[str] | None]
    predicted_ids: list[list[int]]
    match_kinds: list[list[str]]
    scorable: list[bool]
    k: int
    device: torch.device | str = "cpu"
    cache: dict[str, Any] = field(default_factory=dict)
    as_asked: list[bool] | None = None
    completion_lengths: Tensor | None = None
    max_completion_length: int | None = None

    def __post_init__(self) -> None:
        if self.as_asked is None:
            self.as_asked = [p is not None for p in self.parsed]

    def __len__(self) -> int:
        return len(self.texts)

    def values(self, values: Sequence[float]) -> Tensor:
        """``values`` as a float32 (N,) tensor on the batch's device."""
        return torch.tensor(values, dtype=torch.float32, device=self.device)


class RewardComponent(ABC):
    """One term of the reward.

    Args:
        weight: Multiplier of this term in the total reward; 0 skips it (not computed, not logged).

    Subclasses set ``name`` (the ``rewards/<name>/...`` key) and implement :meth:`__call__`. A component
    that needs the shared graph scorer lists the scores it reads in ``graph_scores`` (``"qas"``,
    ``"pas"``); :meth:`setup` then receives the scorer.
    """

    name: ClassVar[str]
    graph_scores: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = float(weight)

    def setup(self, data: Any, graph: torch.nn.Module | None) -> None:
        """Called once before scoring with the run's :class:`~rerec.data.contract.RecData` and the graph
        scorer (``None`` unless a component asked for graph scores)."""

    @abstractmethod
    def __call__(self, batch: AnswerBatch) -> Tensor:
        """Raw (unweighted) value of every rollout: a float (N,) tensor on ``batch.device``."""


class FormatReward(RewardComponent):
    """``format_reward`` when the answer counts as an answer and is written in the format the prompt
    asked for, ``unparsable_penalty`` otherwise (an answer read leniently from a list gets its
    recommendation scored by the other components, and the penalty here).

    Args:
        weight: Weight in the total.
        format_reward: Value of a scorable answer.
        unparsable_penalty: Value of an unparsable (or, with ``require_candidate``, off-list) answer.
    """

    name = "format"

    def __init__(self, weight: float = 0.1, format_reward: float = 0.5, unparsable_penalty: float = -0.5) -> None:
        super().__init__(weight)
        self.format_reward = format_reward
        self.unparsable_penalty = unparsable_penalty

    def __call__(self, batch: AnswerBatch) -> Tensor:
        return batch.values([self.format_reward if ok and asked else self.unparsable_penalty
                             for ok, asked in zip(batch.scorable, batch.as_asked)])


class NDCGReward(RewardComponent):
    """NDCG@K of the matched titles against the ground truth; ``unparsable_penalty`` when the answer does
    not count (an unparsable answer must score below any wrong one).

    Args:
        weight: Weight in the total.
        unparsable_penalty: Value of an unscorable answer.
    """

    name = "ndcg"

    def __init__(self, weight: float = 1.0, unparsable_penalty: float = -0.5) -> None:
        super().__init__(weight)
        self.unparsable_penalty = unparsable_penalty

    def __call__(self, batch: AnswerBatch) -> Tensor:
        return batch.values([
            ndcg_at_k(ids, set(task.answer_ids), batch.k) if ok else self.unparsable_penalty
            for ids, task, ok in zip(batch.predicted_ids, batch.tasks, batch.scorable)
        ])


def graph_scores(batch: AnswerBatch, scorer: torch.nn.Module) -> dict[str, Tensor]:
    """QAS and PAS of every rollout: the mean over its first K predictions (0 when it has none or does
    not count), from one batched scorer call shared by the components of ``batch``."""
    if "graph" in batch.cache:
        return batch.cache["graph"]
    rows, preds, truths = [], [], []
    for row, (ids, task, ok) in enumerate(zip(batch.predicted_ids, batch.tasks, batch.scorable)):
        for item in ids[: batch.k] if ok else ():
            rows.append(row)
            preds.append(item)
            truths.append(task.truth_ids)
    n, device = len(batch), batch.device
    if not preds:
        zeros = torch.zeros(n, dtype=torch.float32, device=device)
        batch.cache["graph"] = {"qas": zeros, "pas": zeros.clone()}
        return batch.cache["graph"]
    width = max(len(t) for t in truths)
    truth = torch.full((len(truths), width), -1, dtype=torch.long)
    for j, t in enumerate(truths):
        truth[j, : len(t)] = torch.as_tensor(t, dtype=torch.long)
    scorer_device = next((b.device for b in scorer.buffers()), torch.device("cpu"))
    scores = scorer(torch.as_tensor(preds, device=scorer_device), truth.to(scorer_device))
    index = torch.as_tensor(rows, device=device)
    count = torch.zeros(n, dtype=torch.float32, device=device).index_add_(
        0, index, torch.ones(len(rows), dtype=torch.float32, device=device))
    out = {}
    for name in ("qas", "pas"):
        summed = torch.zeros(n, dtype=torch.float32, device=device).index_add_(0, index, scores[name].to(device).float())
        out[name] = summed / count.clamp(min=1)
    batch.cache["graph"] = out
    return out


class _GraphComponent(RewardComponent):
    """A score of the shared :class:`~rerec.graph.alignment.GraphRewardScorer` (``graph_scores`` names it).

    Args:
        weight: Weight in the total (the released reference code uses 0.01 for both graph scores).
    """

    def __init__(self, weight: float = 0.01) -> None:
        super().__init__(weight)

    def setup(self, data: Any, graph: torch.nn.Module | None) -> None:
        if graph is None:
            raise ValueError(f"reward component {self.name!r} needs the graph scorer, and none was built")
        self.graph = graph

    def __call__(self, batch: AnswerBatch) -> Tensor:
        return graph_scores(batch, self.graph)[self.name]


class QASReward(_GraphComponent):
    """Query Alignment Score on the item–attribute graph: the share of the ground truth's attributes the
    recommended item also has (mean over the first K predictions)."""

    name = "qas"
    graph_scores = frozenset({"qas"})


class PASReward(_GraphComponent):
    """Preference Alignment Score: cosine similarity of the recommended and ground-truth items in the
    LightGCN embedding space (max over several truths; mean over the first K predictions)."""

    name = "pas"
    graph_scores = frozenset({"pas"})


def default_reward_components() -> list[RewardComponent]:
    """The released reference weights: format 0.1, NDCG 1.0, QAS 0.01, PAS 0.01."""
    return [FormatReward(), NDCGReward(), QASReward(), PASReward()]
