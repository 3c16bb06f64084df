"""Title-matching throughput on the real MovieLens catalog; prints one JSON object.

    python benchmarks/title_matching.py --movies data/recbench/movie/movies.dat

``--movies`` is the ``movies.dat`` of a RecBench+ release (MovieLens-1M's catalog; see the README for
where it goes).

Mixes (single thread, best of ``--repeats`` runs, LRU cache off unless said):

- ``exact``: catalog titles as written;
- ``normalized``: the same titles in natural order / lower case / without the year;
- ``fuzzy``: one character deleted or replaced (titles that still match exactly/normalised are dropped,
  so every title of this mix goes through rapidfuzz);
- ``none``: titles that are in no catalog (catalog titles with their letters shuffled): a fuzzy scan
  that finds nothing, the worst case;
- ``mixed``: 60% exact, 25% normalised, 10% fuzzy, 5% unknown — about what a policy's answers look like;
- ``mixed_cached``: the mixed list matched twice with the LRU cache on (rewards see the same titles
  again and again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import rapidfuzz

from rerec.data.matching import TitleMatcher
from rerec.data.movielens import read_movies

# Where the README puts the RecBench+ download (the MovieLens-1M catalog).
DEFAULT_MOVIES = Path(__file__).resolve().parents[1] / "data" / "recbench" / "movie" / "movies.dat"


def natural(title: str, rng: random.Random) -> str:
    """A normalised-equal variant: article moved to the front, lower case, or year dropped."""
    m = re.match(r"^(.*), (The|A|An) (\(\d{4}\))$", title)
    if m and rng.random() < 0.6:
        return f"{m.group(2)} {m.group(1)} {m.group(3)}"
    if rng.random() < 0.5:
        return title.lower()
    return re.sub(r"\s*\(\d{4}\)$", "", title)


def typo(title: str, rng: random.Random) -> str:
    """One character of the name (not the year) deleted or replaced."""
    name_end = max(1, len(title) - 7)
    i = rng.randrange(name_end)
    if rng.random() < 0.5:
        return title[:i] + title[i + 1 :]
    return title[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + title[i + 1 :]


def rate(matcher: TitleMatcher, titles: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matcher.match_many(titles)
        best = min(best, time.perf_counter() - start)
    return len(titles) / best


def machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "rapidfuzz": rapidfuzz.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movies", type=Path, default=DEFAULT_MOVIES, help="MovieLens movies.dat")
    parser.add_argument("--titles", type=int, default=2000, help="titles per mix")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    items = read_movies(args.movies)
    rng = random.Random(args.seed)
    catalog = [item.title for item in items.values()]
    start = time.perf_counter()
    matcher = TitleMatcher(items.values(), cache_size=0)
    build_s = time.perf_counter() - start

    exact = [rng.choice(catalog) for _ in range(args.titles)]
    normalized = [natural(rng.choice(catalog), rng) for _ in range(args.titles)]
    fuzzy: list[str] = []
    while len(fuzzy) < args.titles:
        candidate = typo(rng.choice(catalog), rng)
        if matcher.match(candidate).kind == "fuzzy":
            fuzzy.append(candidate)
    unknown: list[str] = []
    while len(unknown) < args.titles:  # catalog-like lengths: a real title with its letters shuffled
        name, year = re.match(r"^(.*?)(\s*\(\d{4}\))?$", rng.choice(catalog)).groups()
        letters = list(name)
        rng.shuffle(letters)
        candidate = "".join(letters) + (year or "")
        if matcher.match(candidate).kind == "none":
            unknown.append(candidate)
    n = args.titles
    mixed = exact[: int(0.6 * n)] + normalized[: int(0.25 * n)] + fuzzy[: int(0.1 * n)] + unknown[: n // 20]
    rng.shuffle(mixed)

    mixes = {"exact": exact, "normalized": normalized, "fuzzy": fuzzy, "none": unknown, "mixed": mixed}
    titles_per_s = {name: round(rate(matcher, titles, args.repeats)) for name, titles in mixes.items()}
    kinds = {}
    for name, titles in mixes.items():
        found = [m.kind for m in matcher.match_many(titles)]
        kinds[name] = {k: found.count(k) for k in ("exact", "normalized", "fuzzy", "none")}
    cached = TitleMatcher(items.values())
    cached.match_many(mixed)  # warm: the second pass is what repeated reward calls see
    titles_per_s["mixed_cached"] = round(rate(cached, mixed, args.repeats))

    print(
        json.dumps(
            {
                "benchmark": "title_matching",
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "catalog_items": len(items),
                "index_build_s": round(build_s, 4),
                "titles_per_mix": n,
                "threshold": matcher.threshold,
                "titles_per_s": titles_per_s,
                "match_kinds": kinds,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
