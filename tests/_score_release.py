"""A small RecBench+-shaped release whose scores are computed by hand in the scoring tests.

Catalog: Heat and Casino (the explicit query's truth, both Crime), GoodFellas (Crime, not truth),
Clerks (Comedy), Breakfast Club, Mission: Impossible and its sequel. The explicit query asks for Crime
films (truth: Heat, Casino); record 1 of the demographics file holds one empty entry before its second
query, and its data_idx (30) is not its position (1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MOVIES = """\
1::Heat (1995)::Action|Crime
2::Casino (1995)::Crime|Drama
3::GoodFellas (1990)::Crime
4::Clerks (1994)::Comedy
5::Breakfast Club, The (1985)::Comedy|Drama
6::Mission: Impossible (1996)::Action
7::Mission: Impossible 2 (2000)::Action
"""

EXPLICIT = [
    {"data_idx": 7, "source_user": "1", "condition_num": 1, "movieCount": 2,
     "movieSubset": ["Heat (1995)", "Casino (1995)"], "movieSubsetId": [1, 2],
     "sharedRelationships": [["Genre", "Crime"]],
     "situational_description_query": "A crime film for tonight?"},
    {"data_idx": 8, "source_user": "1", "condition_num": 1, "movieCount": 1,
     "movieSubset": ["Clerks (1994)"], "movieSubsetId": [4],
     "sharedRelationships": [["Genre", "Comedy"]],
     "situational_description_query": "Something funny?"},
]

DEMOGRAPHICS = [
    {"data_idx": 0, "group_type": "age", "group": "25-34",
     "query & ground true": [
         {"reason": "r", "query": "80s classics?",
          "movie subset": ["Breakfast Club, The (1985)", "Mission: Impossible (1996)"]},
     ]},
    {"data_idx": 30, "group_type": "age", "group": "18-24",
     "query & ground true": [
         {"reason": "r", "query": "Comedies?", "movie subset": ["Clerks (1994)"]},
         {},
         {"reason": "r", "query": "Crime?", "movie subset": ["GoodFellas (1990)"]},
     ]},
]


def write_score_release(root: Path) -> Path:
    """Write the release under ``root/movie``; returns ``root``."""
    folder = root / "movie"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_text(MOVIES)
    (folder / "ExplicitQuery.json").write_text(json.dumps(EXPLICIT))
    (folder / "UserBasedQuery.json").write_text(json.dumps(DEMOGRAPHICS))
    return root


def write_lines(path: Path, rows: list[Any]) -> Path:
    """JSON lines (a ``str`` row is written as is: for broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path
