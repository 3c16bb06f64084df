"""Score any model's answers on RecBench+: ``python -m rerec.eval score <release root> --domain movie
--type demographics --predictions FILE --protocol {official,corrected} [--k 0] [--out DIR] [--json]``.

``official`` reproduces the benchmark's own evaluation script (its published numbers), ``corrected``
scores what the benchmark means (docs/recbench-scoring.md). Without ``--json`` a short table of the means
is printed; with it, the summary as one JSON object on stdout (logs go to stderr). Exit status 2 on bad
input (the message names the file, and the line or record and field).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rerec.data.answer import ANSWER_FORMATS
from rerec.data.movielens import RecBenchFormatError
from rerec.eval.score import PROTOCOLS, parse_query_type, score_predictions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rerec.eval", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a predictions file on one query type")
    score.add_argument("root", help="release folder holding <domain>/ (movies.dat, the query files)")
    score.add_argument("--domain", default="movie", choices=("movie", "book"))
    score.add_argument("--type", required=True, dest="query_type",
                       help="explicit, implicit, misinformed, interest_based, demographics "
                            "(or the file stem: ExplicitQuery, ..., UserBasedQuery)")
    score.add_argument("--predictions", required=True,
                       help="JSON lines or a JSON list of {id, response}; OpenAI batch output; "
                            "ReRec's predictions.jsonl")
    score.add_argument("--protocol", required=True, choices=PROTOCOLS)
    score.add_argument("--k", type=int, default=0, help="titles scored per answer; 0 = all (default)")
    score.add_argument("--answer-format", default="sep", choices=ANSWER_FORMATS,
                       help="how the corrected protocol reads answers: sep ([SEP] lists, default) or boxed "
                            "(ReRec's \\boxed{a; b}); the official protocol always splits on [SEP]")
    score.add_argument("--on-error", default="raise", choices=("raise", "skip"),
                       help="a bad predictions line: stop with an error (default), or skip and count it")
    score.add_argument("--out", help="write per_query.jsonl and summary.json here")
    score.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return parser


def render(summary: dict[str, Any]) -> str:
    """The summary's means and counts as a few lines of text."""
    lines = [f"{summary['domain']} {summary['type']} ({summary['file']}), {summary['protocol']} protocol, "
             f"k = {summary['k']}: {summary['scored']} of {summary['queries']} queries scored"]
    for metric, value in summary["means"].items():
        lines.append(f"  {metric:<28}{'-' if value is None else f'{value:.4f}'}")
    skipped = summary["predictions"]["skipped_lines"]
    if skipped or summary["predictions"]["other_type_lines"]:
        lines.append(f"  skipped lines: {skipped}; lines of other query types: "
                     f"{summary['predictions']['other_type_lines']}")
    if "unreachable_truth_titles" in summary:
        lines.append(f"  ground-truth titles no answer can match: {summary['unreachable_truth_titles']} of "
                     f"{summary['truth_titles']}")
    return "\n".join(lines)


def _score(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status and what to print: the summary (0), or the bad input's message (2)."""
    try:
        summary = score_predictions(
            args.root, args.domain, parse_query_type(args.query_type), args.predictions, args.protocol,
            k=args.k, answer_format=args.answer_format, on_error=args.on_error, out=args.out,
        )
    except (RecBenchFormatError, FileNotFoundError, ValueError) as error:  # bad input, named in the message
        return 2, f"error: {error}"
    return 0, json.dumps(summary, ensure_ascii=False) if args.json else render(summary)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    status, text = _score(args)
    print(text, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
