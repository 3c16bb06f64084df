"""Inspect a RecBench+-shaped release: ``python -m rerec.data <root> --domain movie [--json]``.

Prints, per query type, the number of queries, the mean number of conditions per query and how the
ground-truth titles resolved to catalog items (given id, exact, normalised, fuzzy, not at all), then the
unmatched titles. ``--json`` prints one JSON object on stdout instead (logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rerec.data.recbench import RESOLUTION_KINDS, OnError, RecBenchFormatError, load_release


def summary(
    root: str, domain: str, on_error: OnError = "raise", match_threshold: float | None = None
) -> dict[str, Any]:
    """The inspection result as a JSON-serialisable dict.

    Keys: ``domain``, ``catalog`` (source, items), ``users``, ``interactions``, ``queries_by_type``
    (type → count), ``conditions_per_query`` (type → mean), ``skipped`` (type → records/queries skipped,
    plus skipped files), ``ground_truth_titles`` (``total``, ``matched``, ``unmatched``, ``match_rate``,
    ``by_kind``, ``unmatched_titles``, ``by_type``) and ``kg_triples``.
    """
    release = load_release(root, domain, on_error=on_error, match_threshold=match_threshold)
    stats = release.stats
    files = {t: s for t, s in stats["files"].items() if isinstance(s, dict)}
    titles = dict(stats["ground_truth_titles"])
    titles["match_rate"] = titles["matched"] / titles["total"] if titles["total"] else None
    return {
        "domain": domain,
        "catalog": stats["catalog"],
        "users": stats["users"],
        "interactions": stats["interactions"],
        "queries_by_type": stats["queries_by_type"],
        "conditions_per_query": {t: round(s["conditions_per_query"], 4) for t, s in files.items()},
        "missing_files": [t for t, s in stats["files"].items() if s == "missing"],
        "skipped": {
            **{
                t: {"records": s["skipped_records"], "queries": s["skipped_queries"]}
                for t, s in files.items()
            },
            "files": stats["skipped_files"],
        },
        "ground_truth_titles": titles,
        "kg_triples": stats.get("kg", {}).get("total", len(release.triples)),
    }


def render(result: dict[str, Any]) -> str:
    """Human-readable table of :func:`summary`'s result."""
    lines = [
        f"domain {result['domain']}: catalog {result['catalog']['items']} items "
        f"({result['catalog']['source']}), {result['users']} users, "
        f"interactions: {result['interactions']}, KG triples: {result['kg_triples']}",
        "",
        f"{'type':<16}{'queries':>8}{'cond/q':>8}" + "".join(f"{k:>12}" for k in RESOLUTION_KINDS) + f"{'matched':>10}",
    ]
    by_type = result["ground_truth_titles"]["by_type"]
    for qtype, count in result["queries_by_type"].items():
        t = by_type[qtype]
        rate = f"{t['matched'] / t['total']:.1%}" if t["total"] else "-"
        lines.append(
            f"{qtype:<16}{count:>8}{result['conditions_per_query'][qtype]:>8.2f}"
            + "".join(f"{t['by_kind'][k]:>12}" for k in RESOLUTION_KINDS)
            + f"{rate:>10}"
        )
    total = result["ground_truth_titles"]
    rate = f"{total['match_rate']:.1%}" if total["match_rate"] is not None else "-"
    lines.append(
        f"{'all':<16}{sum(result['queries_by_type'].values()):>8}{'':>8}"
        + "".join(f"{total['by_kind'][k]:>12}" for k in RESOLUTION_KINDS)
        + f"{rate:>10}"
    )
    if result["missing_files"]:
        lines.append(f"\nmissing query files (skipped): {', '.join(result['missing_files'])}")
    skipped = {t: s for t, s in result["skipped"].items() if t != "files" and (s["records"] or s["queries"])}
    if skipped or result["skipped"]["files"]:
        lines.append(f"skipped: {skipped} files: {result['skipped']['files']}")
    if total["unmatched_titles"]:
        lines.append(f"\nunmatched ground-truth titles ({len(total['unmatched_titles'])} distinct):")
        lines.extend(f"  {title}" for title in total["unmatched_titles"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; returns the exit status (1 on a format error, which is printed)."""
    parser = argparse.ArgumentParser(prog="python -m rerec.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="release folder holding <domain>/")
    parser.add_argument("--domain", default="movie", help="movie or book (default: movie)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="stop at the first malformed record (default) or skip and count it")
    parser.add_argument("--match-threshold", type=float, default=None,
                        help="fuzzy title threshold (default 0.8 movie, 0.65 book)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        result = summary(args.root, args.domain, args.on_error, args.match_threshold)
    except (RecBenchFormatError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
