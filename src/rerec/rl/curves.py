"""``curves.png``: one picture of a fit, drawn from its run folder (``metrics.csv`` + ``summary.json``).

Four panels a reader checks first: the reward and its components over the RL steps, held-out accuracy
before → after RL (overall, sampled and greedy, and per query type), the curriculum's active set and
mean difficulty, and where a step's time goes (generate / score / update). It reads only the run
folder, so any finished run can be drawn again:

    python -m rerec.rl.curves runs/tiny/rerec/version_0          # writes runs/.../curves.png
    python -m rerec.rl.curves runs/tiny/rerec/version_0 --out docs/curves.png
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Series", "read_metrics_csv", "plot_curves", "render_run"]

#: ``metric -> [(step, value), ...]`` in step order.
Series = dict[str, list[tuple[int, float]]]

STEP_PARTS = (("time/generate_s", "generate"), ("time/score_s", "score"), ("time/update_s", "update"))
QUERY_TYPES = ("explicit", "implicit", "misinformed", "interest_based", "demographics")


def read_metrics_csv(path: str | Path) -> Series:
    """Every numeric column of a Lightning ``metrics.csv`` as ``(step, value)`` pairs (empty cells and
    non-finite values skipped)."""
    series: Series = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                step = int(float(row.get("step") or 0))
            except ValueError:
                continue
            for key, cell in row.items():
                if key in ("step", "epoch") or not cell:
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing running mean (RL curves are noisy step to step)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _window(n: int) -> int:
    return max(1, min(25, n // 10))


def _plot_rewards(ax: Any, metrics: Series) -> None:
    names = ["reward", *sorted(k for k in metrics if k.startswith("rewards/") and k.endswith("/mean"))]
    for name in names:
        points = metrics.get(name)
        if not points:
            continue
        steps, values = zip(*points)
        label = "total" if name == "reward" else name.split("/")[1]
        ax.plot(steps, _smooth(values, _window(len(values))), label=label, lw=2.0 if name == "reward" else 1.2)
    ax.set_title("reward and its components (running mean)")
    ax.set_xlabel("RL step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _plot_held_out(ax: Any, summary: Mapping[str, Any]) -> None:
    before, after = summary.get("val_before") or {}, summary.get("val_after") or {}
    labels, b, a = [], [], []
    if "sampled" in before and "sampled" in after:
        labels.append("sampled")
        b.append(before["sampled"]["accuracy"])
        a.append(after["sampled"]["accuracy"])
    if "accuracy" in before and "accuracy" in after:
        labels.append("greedy")
        b.append(before["accuracy"])
        a.append(after["accuracy"])
    # per type: the sampled accuracy when the run measured it (the headline's metric), else greedy
    source_b, source_a, kind = before, after, "greedy"
    if "sampled" in before and "sampled" in after:
        source_b, source_a, kind = before["sampled"], after["sampled"], "sampled"
    types_b, types_a = source_b.get("accuracy_by_type", {}), source_a.get("accuracy_by_type", {})
    for t in [t for t in QUERY_TYPES if t in types_b and t in types_a]:
        labels.append(t.replace("_", "-"))
        b.append(types_b[t])
        a.append(types_a[t])
    if not labels:
        ax.text(0.5, 0.5, "no held-out evaluation in summary.json", ha="center", va="center")
        ax.set_axis_off()
        return
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], b, width=0.4, label="before RL", color="#9aa7b8")
    ax.bar([i + 0.2 for i in x], a, width=0.4, label="after RL", color="#2f6db5")
    ax.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out NDCG@1")
    ax.set_title(f"held-out accuracy before → after RL (per type: {kind})")
    ax.legend(fontsize=8)


def _plot_curriculum(ax: Any, metrics: Series, summary: Mapping[str, Any]) -> None:
    active = metrics.get("curriculum/active")
    history = summary.get("curriculum") or []
    if not active and not history:
        ax.text(0.5, 0.5, "no curriculum in this run", ha="center", va="center")
        ax.set_axis_off()
        return
    if active:
        steps, values = zip(*active)
        ax.step(steps, values, where="post", color="#2f6db5", label="active queries")
    else:
        ax.plot([h["epoch"] for h in history], [h["active"] for h in history], "o-", label="active queries")
        ax.set_xlabel("epoch")
    ax.set_ylabel("active queries")
    difficulty = metrics.get("curriculum/mean_difficulty")
    if difficulty:
        twin = ax.twinx()
        steps, values = zip(*difficulty)
        twin.plot(steps, values, color="#d9822b", lw=1.2, label="mean difficulty")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("mean difficulty (1 − NDCG)")
        twin.legend(loc="upper right", fontsize=8)
    ax.set_title("curriculum: active set and mean difficulty")
    if active:
        ax.set_xlabel("RL step")
    ax.legend(loc="lower left", fontsize=8)


def _plot_step_time(ax: Any, metrics: Series) -> None:
    parts = [(label, metrics[key]) for key, label in STEP_PARTS if metrics.get(key)]
    if not parts:
        ax.text(0.5, 0.5, "no step timings", ha="center", va="center")
        ax.set_axis_off()
        return
    n = min(len(points) for _, points in parts)
    steps = [s for s, _ in parts[0][1][:n]]
    stacks = [_smooth([v for _, v in points[:n]], _window(n)) for _, points in parts]
    ax.stackplot(steps, *stacks, labels=[label for label, _ in parts], alpha=0.8)
    ax.set_xlabel("RL step")
    ax.set_ylabel("seconds per step")
    ax.set_title("step time split (running mean)")
    ax.legend(loc="upper left", fontsize=8)


def _headline_of(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The headline of a summary written before ``summary.json`` carried one."""
    before, after = summary.get("val_before") or {}, summary.get("val_after") or {}
    for metric, b, a in (("sampled held-out accuracy", before.get("sampled"), after.get("sampled")),
                         ("greedy held-out accuracy", before, after)):
        if b and a and "accuracy" in b and "accuracy" in a:
            return {"metric": metric, "before": b["accuracy"], "after": a["accuracy"],
                    "change": a["accuracy"] - b["accuracy"]}
    return None


def plot_curves(metrics: Series, summary: Mapping[str, Any], out: str | Path, title: str | None = None) -> Path:
    """Draw the four panels into ``out`` (PNG) and return its path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    _plot_rewards(axes[0][0], metrics)
    _plot_held_out(axes[0][1], summary)
    _plot_curriculum(axes[1][0], metrics, summary)
    _plot_step_time(axes[1][1], metrics)
    headline = summary.get("headline") or _headline_of(summary)
    suptitle = title or "ReRec fit"
    if headline:
        suptitle += (f" — {headline['metric']} {headline['before']:.3f} → {headline['after']:.3f} "
                     f"({headline['change']:+.3f})")
    fig.suptitle(suptitle)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def render_run(run_dir: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """``curves.png`` of a run folder (``metrics.csv`` and ``summary.json``, either may be missing)."""
    run_dir = Path(run_dir)
    metrics = read_metrics_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else {}
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    return plot_curves(metrics, summary, out or run_dir / "curves.png", title=title or f"ReRec fit: {run_dir}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rerec.rl.curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder with metrics.csv and summary.json")
    parser.add_argument("--out", help="where to write the PNG (default: RUN_DIR/curves.png)")
    parser.add_argument("--title", help="the picture's title (default: names the run folder)")
    args = parser.parse_args(argv)
    print(render_run(args.run_dir, args.out, args.title))


if __name__ == "__main__":
    main()
