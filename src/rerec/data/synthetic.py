"""The embedded synthetic world: a seeded catalog, knowledge graph, users and RecBench+-shaped queries.

It exists so that the whole pipeline runs and visibly learns on a laptop CPU with no download. The world is
written to disk in the RecBench+ layout and schema (``docs/recbench.md``) and read back by the same
readers as the real release, so every code path is the real one:

``<root>/movie/movies.dat``, ``users.dat``, ``ratings.dat``, ``ExplicitQuery.json``, ``ImplicitQuery.json``,
``MisinformedQuery.json``, ``InterestBasedQuery.json``, ``UserBasedQuery.json`` and ``kg_triples.tsv``
(the optional ``item<TAB>relation<TAB>value`` triples file).

How the world is built (all draws from one ``numpy`` generator seeded by ``seed``):

- items get a title with a year (MovieLens style: a leading article moves to the end, ``"Silent River,
  The (1987)"``), a genre, a director, a lead actor, a writer and a studio;
- users get MovieLens demographics and a latent taste (two favourite genres and a favourite studio, with
  age-band tendencies); their history is drawn with probability ∝ popularity × taste;
- explicit queries state 1–3 conditions of an item in the source user's history; the ground truth is every
  item of that history meeting all conditions (as RecBench+ defines it);
- implicit queries refer to one condition through a well-known "reference" item ("the same director as
  X"); misinformed ones add a wrong fact about that reference item;
- interest-based queries come from items shared by two users and name the genre they share;
- demographics queries come from the most-watched items of an age group, with titles written in natural
  order (``"The Silent River (1987)"``), as the real file does, so title matching is exercised.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rerec.atomic import atomic_write_text
from rerec.data.prompts import RELATION_PHRASES

GENRES = (
    "Drama", "Comedy", "Thriller", "Romance", "Action", "Horror",
    "Western", "Musical", "Mystery", "Fantasy", "War", "Animation",
)
ADJECTIVES = (
    "Silent", "Golden", "Broken", "Hidden", "Last", "Crimson", "Wild", "Frozen", "Distant", "Hollow",
    "Burning", "Quiet", "Iron", "Lost", "Secret", "Bright", "Falling", "Endless", "Velvet", "Northern",
    "Restless", "Shattered", "Midnight", "Painted", "Wandering", "Sacred", "Bitter", "Electric",
)
NOUNS = (
    "River", "Harbor", "Garden", "Mirror", "Empire", "Highway", "Orchard", "Lantern", "Desert", "Kingdom",
    "Winter", "Station", "Signal", "Island", "Shadow", "Voyage", "Canyon", "Letter", "Circus", "Engine",
    "Promise", "Frontier", "Monsoon", "Cathedral", "Labyrinth", "Meadow", "Compass", "Tide",
)
FIRST_NAMES = (
    "Ann", "Bruno", "Clara", "Dev", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luca",
    "Maya", "Nils", "Olga", "Pablo", "Rosa", "Sami", "Tara", "Victor", "Wanda", "Yuri", "Zoe", "Amir",
)
LAST_NAMES = (
    "Lee", "Marsh", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Tan", "Umar", "Vance",
    "Weber", "Young", "Zhou", "Abbott", "Berg", "Costa", "Duval", "Eriksen", "Fontaine",
)
STUDIOS = (
    "Orion Pictures", "Bluebird Films", "Northstar Studios", "Redwood Media", "Lighthouse Pictures",
    "Granite Films", "Silverline", "Harbor Light", "Cobalt Pictures", "Pinecrest Studios",
)
ARTICLES = ("The", "A")
# MovieLens-1M demographic codes of users.dat (docs/recbench.md).
AGE_CODES = (1, 18, 25, 35, 45, 50, 56)
AGE_BANDS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}

# Relation names follow the RecBench+ movie knowledge graph (the names its query conditions use).
RELATIONS = ("Genre", "Directed_by", "Starring", "Written_by", "Produced_by")
_IMPLICIT_TEMPLATES = {
    "Directed_by": "directed by the same person as {ref}",
    "Starring": "starring an actor from {ref}",
    "Written_by": "written by the writer of {ref}",
    "Produced_by": "from the studio behind {ref}",
}


@dataclass
class SyntheticWorldConfig:
    """Size and seed of the embedded synthetic world.

    Args:
        seed: Seed of every random draw; the same seed writes byte-identical files.
        num_items: Catalog size (≥ 300 keeps titles varied enough for 20-candidate prompts).
        num_users: Number of users with histories.
        num_directors: Distinct directors (also writers are drawn from this many people).
        num_actors: Distinct actors.
        num_reference_items: Size of the pool of well-known items that implicit and misinformed queries
            refer to; small so that a tiny model can learn their facts.
        history_length: Mean number of items in a user's history.
        num_explicit: Explicit condition queries. Thousands, not hundreds: with a few hundred training
            queries a small model memorises query → answer instead of learning to read the candidates.
        num_implicit: Implicit condition queries.
        num_misinformed: Misinformed condition queries.
        num_interest_records: Interest-based records (each yields up to 4 queries).
        max_conditions: Largest number of conditions in an explicit query.
    """

    seed: int = 0
    num_items: int = 320
    num_users: int = 400
    num_directors: int = 45
    num_actors: int = 70
    num_reference_items: int = 30
    history_length: int = 40
    num_explicit: int = 3000
    num_implicit: int = 700
    num_misinformed: int = 450
    num_interest_records: int = 100
    max_conditions: int = 2


@dataclass
class _Movie:
    item_id: int
    name: str  # natural order, no year: "The Silent River"
    year: int
    attributes: dict[str, list[str]]
    popularity: float

    @property
    def natural_title(self) -> str:
        return f"{self.name} ({self.year})"

    @property
    def catalog_title(self) -> str:
        """MovieLens style: a leading article moves to the end ("Silent River, The (1987)")."""
        first, _, rest = self.name.partition(" ")
        if first in ARTICLES and rest:
            return f"{rest}, {first} ({self.year})"
        return self.natural_title

    def has(self, relation: str, value: str) -> bool:
        return value in self.attributes[relation]


class _WorldBuilder:
    """Draws the world; one instance per call of :func:`write_world`."""

    def __init__(self, config: SyntheticWorldConfig) -> None:
        self.cfg = config
        self.rng = np.random.default_rng(config.seed)

    def pick(self, seq, size=None, replace=False, p=None):
        idx = self.rng.choice(len(seq), size=size, replace=replace, p=p)
        return [seq[i] for i in idx] if size is not None else seq[idx]

    # ---------------------------------------------------------------- catalog
    def people(self, n: int, exclude: set[str]) -> list[str]:
        names: list[str] = []
        while len(names) < n:
            name = f"{self.pick(FIRST_NAMES)} {self.pick(LAST_NAMES)}"
            if name not in exclude and name not in names:
                names.append(name)
        return names

    def catalog(self) -> list[_Movie]:
        cfg = self.cfg
        directors = self.people(cfg.num_directors, set())
        actors = self.people(cfg.num_actors, set(directors))
        names: set[str] = set()
        movies: list[_Movie] = []
        # Zipf-like popularity so that histories and group tops have structure.
        popularity = 1.0 / np.arange(1, cfg.num_items + 1) ** 0.7
        self.rng.shuffle(popularity)
        while len(movies) < cfg.num_items:
            adj, noun = self.pick(ADJECTIVES), self.pick(NOUNS)
            form = self.rng.integers(3)
            name = (f"The {adj} {noun}", f"{adj} {noun}", f"A {adj} {noun}")[form]
            if form == 1 and self.rng.random() < 0.3:
                name = f"{noun} of the {adj} {self.pick(NOUNS)}"
            if name in names:
                continue
            names.add(name)
            # One value per relation keeps every fact a single key in the prompt (see prompts.py).
            attributes = {
                "Genre": [self.pick(GENRES)],
                "Directed_by": [self.pick(directors)],
                "Starring": [self.pick(actors)],
                "Written_by": [self.pick(directors)],
                "Produced_by": [self.pick(STUDIOS)],
            }
            movies.append(
                _Movie(
                    item_id=len(movies) + 1,
                    name=name,
                    year=int(self.rng.integers(1950, 2011)),
                    attributes=attributes,
                    popularity=float(popularity[len(movies)]),
                )
            )
        return movies

    # ------------------------------------------------------------------ users
    def users(self, movies: list[_Movie]) -> tuple[list[dict], dict[int, list[int]]]:
        cfg = self.cfg
        users, histories = [], {}
        pop = np.array([m.popularity for m in movies])
        # Each age band leans towards a few genres, which gives demographics queries a real signal.
        band_genres = {a: self.pick(GENRES, size=3) for a in AGE_CODES}
        for uid in range(1, cfg.num_users + 1):
            age = int(self.pick(AGE_CODES))
            fav_genres = set(self.pick(band_genres[age], size=1) + self.pick(GENRES, size=1))
            fav_studio = self.pick(STUDIOS)
            taste = np.array(
                [
                    (3.0 if fav_genres & set(m.attributes["Genre"]) else 1.0)
                    * (2.0 if fav_studio in m.attributes["Produced_by"] else 1.0)
                    for m in movies
                ]
            )
            p = pop * taste
            n = int(np.clip(self.rng.poisson(cfg.history_length), 10, len(movies) // 2))
            chosen = self.rng.choice(len(movies), size=n, replace=False, p=p / p.sum())
            histories[uid] = [movies[i].item_id for i in chosen]
            users.append(
                {
                    "user_id": uid,
                    "gender": self.pick(("M", "F")),
                    "age": age,
                    "occupation": int(self.rng.integers(0, 21)),
                    "zip": f"{int(self.rng.integers(10000, 99999)):05d}",
                    "taste": (fav_genres, fav_studio),
                }
            )
        return users, histories

    # ---------------------------------------------------------------- queries
    def condition_queries(
        self, movies: list[_Movie], histories: dict[int, list[int]], kind: str, count: int
    ) -> list[dict]:
        by_id = {m.item_id: m for m in movies}
        by_natural = {m.natural_title: m.item_id for m in movies}
        reference_pool = sorted(movies, key=lambda m: -m.popularity)[: self.cfg.num_reference_items]
        all_people = sorted(
            {v for m in movies for r in ("Directed_by", "Starring", "Written_by") for v in m.attributes[r]}
        )
        records: list[dict] = []
        attempts = 0
        while len(records) < count and attempts < count * 50:
            attempts += 1
            uid = int(self.rng.integers(1, len(histories) + 1))
            anchor = by_id[self.pick(histories[uid])]
            multihop, misinformed = [], []
            if kind == "explicit":
                n_cond = int(self.rng.integers(1, self.cfg.max_conditions + 1))
                relations = self.pick(RELATIONS, size=n_cond)
                conditions = [[r, self.pick(anchor.attributes[r])] for r in relations]
            else:
                # One condition through a reference item, optionally a genre stated outright.
                relation = self.pick(("Directed_by", "Starring", "Written_by", "Produced_by"))
                value = self.pick(anchor.attributes[relation])
                refs = [m for m in reference_pool if m.has(relation, value) and m.item_id != anchor.item_id]
                if not refs:
                    continue
                ref = self.pick(refs)
                conditions = [[relation, value]]
                if self.rng.random() < 0.5:
                    conditions.append(["Genre", self.pick(anchor.attributes["Genre"])])
                multihop = [{"movie": ref.natural_title, "relation": relation, "person": value}]
                if kind == "misinformed":
                    pool = STUDIOS if relation == "Produced_by" else all_people
                    wrong = self.pick([p for p in pool if not ref.has(relation, p)])
                    misinformed = [
                        {"movie": ref.natural_title, "relation": relation, "original person": value,
                         "person": wrong}
                    ]
            # The referenced item is never its own answer ("same director as X" is not X).
            excluded = {by_natural[multihop[0]["movie"]]} if multihop else set()
            truth = [
                i for i in histories[uid]
                if i not in excluded and all(by_id[i].has(r, v) for r, v in conditions)
            ]
            truth_movies = [by_id[i] for i in sorted(set(truth))]
            direct = _direct_text(conditions)
            record = {
                "source_user": str(uid),
                "condition_num": len(conditions),
                "movieCount": len(truth_movies),
                "movieSubset": [m.catalog_title for m in truth_movies],
                "movieSubsetId": [m.item_id for m in truth_movies],
                "sharedRelationships": conditions,
                "direct_description_query": direct,
                "data_idx": len(records),
            }
            if kind == "explicit":
                record["situational_description_query"] = _situational(direct, self.rng)
            else:
                record["multihop_info"] = multihop
                implicit = _implicit_text(conditions, multihop[0])
                record["situational_description_query"] = implicit
                if kind == "misinformed":
                    record["misinformed"] = misinformed
                    wrong = misinformed[0]["person"]
                    record["query"] = implicit.rstrip(".?") + f" ({wrong} was involved there, I believe)."
            records.append(record)
        return records

    def interest_queries(
        self, movies: list[_Movie], histories: dict[int, list[int]], users: list[dict]
    ) -> list[dict]:
        by_id = {m.item_id: m for m in movies}
        records = []
        attempts = 0
        while len(records) < self.cfg.num_interest_records and attempts < 5000:
            attempts += 1
            u1, u2 = (int(x) for x in self.rng.choice(len(histories), size=2, replace=False) + 1)
            shared = sorted(set(histories[u1]) & set(histories[u2]))
            if len(shared) < 3:
                continue
            union = sorted(set(histories[u1]) | set(histories[u2]))
            entries = []
            genres = sorted({g for i in shared for g in by_id[i].attributes["Genre"]})
            for genre in self.pick(genres, size=min(4, len(genres))):
                liked = [i for i in shared if by_id[i].has("Genre", genre)]
                truth = [i for i in union if by_id[i].has("Genre", genre) and i not in liked]
                if not liked or not truth:
                    continue
                examples = " and ".join(by_id[i].natural_title for i in liked[:2])
                entries.append(
                    {
                        "reason": f"Both users watched several {genre.lower()} films such as {examples}.",
                        "query": f"My friend and I both loved {examples}. Which other {genre.lower()} "
                        "film should we watch together?",
                        "movie subset": [by_id[i].natural_title for i in truth[:6]],
                    }
                )
            if entries:
                records.append(
                    {
                        "source_users": [str(u1), str(u2)],
                        "Shared consecutive movies": [by_id[i].natural_title for i in shared],
                        "query & ground true": entries,
                    }
                )
        return records

    def demographic_queries(
        self, movies: list[_Movie], histories: dict[int, list[int]], users: list[dict]
    ) -> list[dict]:
        by_id = {m.item_id: m for m in movies}
        # How many users watched each item: the same for every group, so counted once.
        overall: dict[int, int] = defaultdict(int)
        for h in histories.values():
            for i in h:
                overall[i] += 1
        records = []
        for age in AGE_CODES:
            members = [u["user_id"] for u in users if u["age"] == age]
            if len(members) < 5:
                continue
            counts: dict[int, int] = defaultdict(int)
            for uid in members:
                for i in histories[uid]:
                    counts[i] += 1
            # tf-idf-like score: share of the group that watched it, damped by overall popularity.
            score = {i: c / len(members) * np.log(len(histories) / overall[i]) for i, c in counts.items()}
            top = sorted(score, key=lambda i: (-score[i], i))[:30]
            entries = []
            for genre in GENRES:
                subset = [i for i in top if by_id[i].has("Genre", genre)][:5]
                if len(subset) < 2:
                    continue
                band = AGE_BANDS[age]
                entries.append(
                    {
                        "reason": f"Viewers aged {band} watch many {genre.lower()} films.",
                        "query": f"I'm in the {band} age group. Which {genre.lower()} film do people my age "
                        "enjoy most?",
                        "movie subset": [by_id[i].natural_title for i in subset],
                    }
                )
            if entries:
                records.append(
                    {
                        "data_idx": len(records),
                        "group_type": "age",
                        "group": AGE_BANDS[age],
                        "top_10_movies": [[i, round(float(score[i]), 6)] for i in top[:10]],
                        "summary": f"User Group: [('Age', '{AGE_BANDS[age]}')]\n"
                        f"Total users in this group: {len(members)}",
                        "query & ground true": entries[:7],
                    }
                )
        return records


def _a_film(genre: str | None) -> str:
    """ "a film", "a drama film", "an animation film"."""
    if genre is None:
        return "a film"
    return f"{'an' if genre[0] in 'AEIOU' else 'a'} {genre.lower()} film"


def _direct_text(conditions: list[list[str]]) -> str:
    genre = next((v for r, v in conditions if r == "Genre"), None)
    parts = [f"{RELATION_PHRASES[r]} {v}" for r, v in conditions if r != "Genre"]
    if not parts:
        return f"Can you recommend {_a_film(genre)}?"
    return f"Can you recommend {_a_film(genre)} with " + " and ".join(parts) + "?"


_SITUATIONS = (
    "I have a free evening tonight.",
    "My weekend plans fell through.",
    "I'm hosting a small movie night.",
    "I want something to watch on a long flight.",
)


def _situational(direct: str, rng: np.random.Generator) -> str:
    return f"{_SITUATIONS[int(rng.integers(len(_SITUATIONS)))]} {direct}"


def _implicit_text(conditions: list[list[str]], hop: dict) -> str:
    genre = next((v for r, v in conditions if r == "Genre"), None)
    return f"I'd like {_a_film(genre)} {_IMPLICIT_TEMPLATES[hop['relation']].format(ref=hop['movie'])}."


def write_world(root: str | Path, config: SyntheticWorldConfig | None = None) -> Path:
    """Generate the world and write it in the RecBench+ layout under ``<root>/movie``.

    Returns the domain folder. Writing is atomic per file and the output depends only on ``config``, so a
    second call with the same config is a cheap no-op (a ``world.json`` stamp records the config).
    """
    config = config or SyntheticWorldConfig()
    folder = Path(root) / "movie"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "world.json"
    wanted = json.dumps({"generator": "rerec.synthetic/1", **asdict(config)}, sort_keys=True)
    if stamp.exists() and stamp.read_text() == wanted:
        return folder

    b = _WorldBuilder(config)
    movies = b.catalog()
    users, histories = b.users(movies)
    explicit = b.condition_queries(movies, histories, "explicit", config.num_explicit)
    implicit = b.condition_queries(movies, histories, "implicit", config.num_implicit)
    misinformed = b.condition_queries(movies, histories, "misinformed", config.num_misinformed)
    interest = b.interest_queries(movies, histories, users)
    demographics = b.demographic_queries(movies, histories, users)

    atomic_write_text(
        folder / "movies.dat",
        "".join(f"{m.item_id}::{m.catalog_title}::{'|'.join(m.attributes['Genre'])}\n" for m in movies),
    )
    atomic_write_text(
        folder / "users.dat",
        "".join(f"{u['user_id']}::{u['gender']}::{u['age']}::{u['occupation']}::{u['zip']}\n" for u in users),
    )
    rating_lines = []
    by_id = {m.item_id: m for m in movies}
    for u in users:
        fav_genres, fav_studio = u["taste"]
        for t, i in enumerate(histories[u["user_id"]]):
            m = by_id[i]
            liked = bool(fav_genres & set(m.attributes["Genre"])) + (fav_studio in m.attributes["Produced_by"])
            rating = int(np.clip(2 + liked + b.rng.integers(0, 2), 1, 5))
            rating_lines.append(f"{u['user_id']}::{i}::{rating}::{978300000 + 3600 * t + u['user_id']}\n")
    atomic_write_text(folder / "ratings.dat", "".join(rating_lines))
    atomic_write_text(
        folder / "kg_triples.tsv",
        "".join(
            f"{m.item_id}\t{r}\t{v}\n" for m in movies for r in RELATIONS for v in m.attributes[r]
        ),
    )
    for name, records in (
        ("ExplicitQuery.json", explicit),
        ("ImplicitQuery.json", implicit),
        ("MisinformedQuery.json", misinformed),
        ("InterestBasedQuery.json", interest),
        ("UserBasedQuery.json", demographics),
    ):
        atomic_write_text(folder / name, json.dumps(records, indent=1, ensure_ascii=False))
    atomic_write_text(stamp, wanted)
    return folder
