"""Rows of the completions table: what a person reads to see what the policy writes and why it scored.

One row per rollout: the query, the completion, its reward and every reward component, the parsed
title and how it matched the catalog, and, under RAAE, the reasoning segments it penalised (the lines
that argued for a wrong title). ``completions.jsonl`` stores the rows; a W&B run gets them as the
``completions`` table, the penalised segments wrapped in ``⟦…⟧`` in its ``marked`` column.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from rerec.rl.raae.segments import find_title_mentions, overlapping, split_segments

__all__ = ["penalised_segments", "completion_rows", "marked_html", "marked_text"]

#: Background of a penalised segment in the W&B table and the notebooks.
PENALTY_COLOUR = "#f6c6c6"


def penalised_segments(text: str, wrong_titles: Sequence[str], segment_by: str = "line") -> list[tuple[int, int]]:
    """Character spans of the reasoning segments RAAE penalises in ``text``: those mentioning a
    recommended title that is not ground truth (``wrong_titles``), split as ``segment_by`` splits."""
    if not wrong_titles:
        return []
    segments = split_segments(text, segment_by)  # type: ignore[arg-type]
    mentions = [(s, e) for s, e, _ in find_title_mentions(text, list(wrong_titles))]
    return [seg for seg, hit in zip(segments, overlapping(segments, mentions)) if hit]


def marked_text(text: str, spans: Sequence[tuple[int, int]], open_mark: str = "⟦", close_mark: str = "⟧") -> str:
    """``text`` with each span of ``spans`` wrapped in ``⟦…⟧`` (plain text: a table cell, a log line)."""
    out, last = [], 0
    for s, e in sorted(spans):
        out += [text[last:s], open_mark, text[s:e], close_mark]
        last = e
    out.append(text[last:])
    return "".join(out)


def marked_html(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` as HTML with ``spans`` highlighted (line breaks kept)."""
    out, last = [], 0
    for s, e in sorted(spans):
        out.append(html.escape(text[last:s]))
        out.append(f'<span style="background:{PENALTY_COLOUR}">{html.escape(text[s:e])}</span>')
        last = e
    out.append(html.escape(text[last:]))
    return "<pre style='white-space:pre-wrap'>" + "".join(out) + "</pre>"


def completion_rows(step: int, tasks: Sequence[Any], texts: Sequence[str], scored: Any, group_size: int,
                    segment_by: str | None = None) -> list[dict[str, Any]]:
    """Table rows of one step's rollouts (``tasks`` in batch order, ``group_size`` rollouts each).

    ``scored`` is the step's :class:`~rerec.rl.rewards.ScoredRollouts`; ``segment_by`` is RAAE's
    segmentation (``None``: the advantage penalises no segment, and none are marked).
    """
    rows = []
    for i, text in enumerate(texts):
        task = tasks[i // group_size]
        parsed = scored.parsed[i]
        kinds = scored.match_kinds[i] if i < len(scored.match_kinds) else []
        wrong = scored.wrong_titles[i] if segment_by and parsed is not None and i < len(scored.wrong_titles) else []
        rows.append({
            "step": step, "query_id": task.query_id, "query_type": task.query_type,
            "completion": text, "reward": round(float(scored.total[i]), 4), "correct": scored.correct[i],
            **{name: round(float(v[i]), 4) for name, v in scored.components.items()},
            "parsed_title": parsed[0] if parsed else None,
            "match_kind": kinds[0] if kinds else None,
            "penalised_segments": [list(span) for span in penalised_segments(text, wrong, segment_by or "line")],
        })
    return rows
