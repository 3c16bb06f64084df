"""The rollout reward, made of named components (DESIGN §1.1).

``r = w_fmt·format + w_rec·rec + w_qas·QAS + w_pas·PAS`` where ``format = +0.5`` when the answer parses
and ``−0.5`` otherwise, ``rec = NDCG@K`` (``−0.5`` when unparsable), and QAS/PAS come from the graph scorer
(0 when unparsable or unmatched). A component whose weight is 0 is not computed.

In the candidate task the prompt asks for one of the listed candidates; with ``require_candidate`` an
answer that names none of them (after title matching) is scored like an unparsable one: format and
recommendation components at ``unparsable_penalty``, no QAS/PAS partial credit. An off-list title is a
failure to follow the task, not a near-miss, and without this rule the graph scores would reward recalling
catalog items similar to the truth that can never be right. Raw (unweighted)
component values are returned for logging as ``rewards/<name>/mean``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rerec.data.answer import parse_answer
from rerec.data.matching import TitleMatcher
from rerec.data.records import Item
from rerec.data.tasks import RecTask
from rerec.eval.metrics import ndcg_at_k


@dataclass
class RewardConfig:
    """Weights and constants of the reward.

    Args:
        w_fmt: Weight of the format component.
        w_rec: Weight of the recommendation component (NDCG@K).
        w_qas: Weight of the Query Alignment Score (item–attribute graph); 0 turns it off.
        w_pas: Weight of the Preference Alignment Score (LightGCN space); 0 turns it off.
        k: Cut-off of NDCG@K (1 for the candidate task: accuracy).
        format_reward: Format component of a parsable answer.
        unparsable_penalty: Format and recommendation components of an unparsable answer.
        require_candidate: Candidate task only: an answer that is not one of the prompt's candidates
            scores like an unparsable one (no graph partial credit; RAAE still lowers the segments that
            argue for it). Off by default (the paper's reward); ``configs/tiny.yaml`` turns it on, where
            the tiny policy answers with recalled off-list titles. Ignored by the open task.
    """

    w_fmt: float = 0.1
    w_rec: float = 1.0
    w_qas: float = 0.01
    w_pas: float = 0.01
    k: int = 1
    format_reward: float = 0.5
    unparsable_penalty: float = -0.5
    require_candidate: bool = False


@dataclass
class ScoredRollouts:
    """Rewards and what was read from each completion (one entry per rollout row).

    Attributes:
        total: (N,) total reward.
        components: Raw component values, each (N,): ``format``, ``ndcg`` and, when on, ``qas``/``pas``.
        parsed: Parsed titles per rollout, ``None`` when unparsable.
        predicted_ids: Matched catalog id per parsed title (−1 unmatched).
        match_kinds: Kind of match per parsed title (``candidate`` when taken from the prompt's list).
        correct: Whether the top recommendation is a ground-truth item.
        off_candidate: Whether a parsed answer names no candidate of the prompt (candidate task).
        wrong_titles: The recommended titles that are not ground truth (what RAAE penalises).
    """

    total: torch.Tensor
    components: dict[str, torch.Tensor]
    parsed: list[list[str] | None]
    predicted_ids: list[list[int]]
    match_kinds: list[list[str]]
    correct: list[bool]
    wrong_titles: list[list[str]] = field(default_factory=list)
    off_candidate: list[bool] = field(default_factory=list)


class RecReward:
    """Scores completions of recommendation tasks.

    Args:
        config: Weights and constants.
        items: The catalog (candidate titles are looked up exactly before the fuzzy catalog matcher).
        matcher: Catalog title matcher for titles not written exactly as a candidate.
        scorer: The graph reward module (QAS/PAS), required when ``w_qas`` or ``w_pas`` is non-zero.
        max_titles: 1 for the candidate task; K for the open task.
    """

    def __init__(
        self,
        config: RewardConfig,
        items: dict[int, Item],
        matcher: TitleMatcher,
        scorer: torch.nn.Module | None = None,
        max_titles: int | None = 1,
    ) -> None:
        if (config.w_qas or config.w_pas) and scorer is None:
            raise ValueError("w_qas/w_pas are non-zero but no graph scorer was given")
        self.config = config
        self.items = items
        self.matcher = matcher
        self.scorer = scorer
        self.max_titles = max_titles

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

    def __call__(self, texts: Sequence[str], tasks: Sequence[RecTask], device: torch.device | str = "cpu"):
        """Score ``texts[i]`` as an answer to ``tasks[i]``; returns :class:`ScoredRollouts`."""
        cfg = self.config
        parsed, predicted, kinds, correct, wrong, off = [], [], [], [], [], []
        fmt, rec = [], []
        graph_ids = []  # what QAS/PAS score: nothing for unparsable or (with require_candidate) off-list answers
        for text, task in zip(texts, tasks, strict=True):
            titles = parse_answer(text, max_titles=self.max_titles)
            parsed.append(titles)
            if titles is None:
                predicted.append([])
                kinds.append([])
                correct.append(False)
                wrong.append([])
                off.append(False)
                graph_ids.append([])
                fmt.append(cfg.unparsable_penalty)
                rec.append(cfg.unparsable_penalty)
                continue
            ids, match_kinds = self.match(titles, task)
            predicted.append(ids)
            kinds.append(match_kinds)
            truth = set(task.answer_ids)
            correct.append(ids[0] in truth)
            wrong.append([t for t, i in zip(titles, ids) if i not in truth])
            is_off = self.max_titles == 1 and bool(task.candidate_ids) and ids[0] not in task.candidate_ids
            off.append(is_off)
            if is_off and cfg.require_candidate:
                graph_ids.append([])
                fmt.append(cfg.unparsable_penalty)
                rec.append(cfg.unparsable_penalty)
                continue
            graph_ids.append(ids)
            fmt.append(cfg.format_reward)
            rec.append(ndcg_at_k(ids, truth, cfg.k))
        components = {
            "format": torch.tensor(fmt, dtype=torch.float32, device=device),
            "ndcg": torch.tensor(rec, dtype=torch.float32, device=device),
        }
        total = cfg.w_fmt * components["format"] + cfg.w_rec * components["ndcg"]
        if cfg.w_qas or cfg.w_pas:
            graph = self._graph_scores(graph_ids, tasks, device)
            if cfg.w_qas:
                components["qas"] = graph["qas"]
                total = total + cfg.w_qas * graph["qas"]
            if cfg.w_pas:
                components["pas"] = graph["pas"]
                total = total + cfg.w_pas * graph["pas"]
        return ScoredRollouts(total, components, parsed, predicted, kinds, correct, wrong, off)

    def _graph_scores(self, predicted: list[list[int]], tasks: Sequence[RecTask], device) -> dict[str, torch.Tensor]:
        """QAS/PAS of each rollout = mean over its first K predictions (0 with no prediction)."""
        k = self.config.k
        rows, preds, truths = [], [], []
        for row, (ids, task) in enumerate(zip(predicted, tasks)):
            for item in ids[:k]:
                rows.append(row)
                preds.append(item)
                truths.append(task.truth_ids)
        n = len(predicted)
        if not preds:
            zeros = torch.zeros(n, device=device)
            return {"qas": zeros, "pas": zeros.clone()}
        width = max(len(t) for t in truths)
        truth = torch.full((len(truths), width), -1, dtype=torch.long)
        for j, t in enumerate(truths):
            truth[j, : len(t)] = torch.as_tensor(t, dtype=torch.long)
        scorer_device = next((b.device for b in self.scorer.buffers()), torch.device("cpu"))
        scores = self.scorer(torch.as_tensor(preds, device=scorer_device), truth.to(scorer_device))
        index = torch.as_tensor(rows, device=device)
        count = torch.zeros(n, device=device).index_add_(0, index, torch.ones(len(rows), device=device))
        out = {}
        for name in ("qas", "pas"):
            summed = torch.zeros(n, device=device).index_add_(0, index, scores[name].to(device).float())
            out[name] = summed / count.clamp(min=1)
        return out
