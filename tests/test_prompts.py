"""Prompts and reasoning traces (``rerec.data.prompts``): exact text on hand-made tasks, KG facts on the world."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from rerec.data.answer import parse_answer
from rerec.data.kg_input import item_attributes
from rerec.data.prompts import (
    PromptConfig,
    build_messages,
    describe_facts,
    fact_relations,
    knowledge_lines,
    natural_title,
    reasoning_trace,
)
from rerec.data.recbench import load_release
from rerec.data.records import Item, Query, QueryType, Release
from rerec.data.synthetic import SyntheticWorldConfig, write_world
from rerec.data.tasks import RecTask, build_candidate_tasks, build_open_tasks

ITEMS = {
    1: Item(1, "Silent River, The (1975)", ("Drama",)),
    2: Item(2, "Painted Mirror, The (1987)", ("Drama",)),
    3: Item(3, "Golden Harbor (1990)", ("Comedy",)),
    4: Item(4, "Hollow Engine, A (2001)", ("War", "Drama")),
}
ATTRS = {
    1: {("Directed_by", "Ann Lee"), ("Genre", "Drama")},
    2: {("Directed_by", "Ann Lee"), ("Genre", "Drama"), ("Starring", "Zoe Tan")},
    3: {("Directed_by", "Bo Chen"), ("Genre", "Comedy")},
    4: {("Directed_by", "Bo Chen"), ("Genre", "War"), ("Genre", "Drama")},
}
CONDITIONS = (("Directed_by", "Ann Lee"), ("Genre", "Drama"))
HOP = {"movie": "The Silent River (1975)", "relation": "Directed_by", "person": "Ann Lee"}
LIE = {"movie": "The Silent River (1975)", "relation": "Directed_by", "original person": "Ann Lee",
       "person": "Bo Chen"}


def _task(qtype: QueryType, extra: dict | None = None, conditions=CONDITIONS, history=()) -> RecTask:
    q = Query(
        query_id="movie/x/0", domain="movie", query_type=qtype, text="  I'd like a drama film.  ",
        conditions=conditions, truth_item_ids=(2,), history_item_ids=history, extra=extra or {},
    )
    return RecTask(q, candidate_ids=(3, 2, 4), target_id=2)


def test_describe_facts() -> None:
    attrs = ATTRS[4] | {("Music_by", "Kira Sato"), ("Based_on", "A Novel"), ("Some_relation", "x")}
    assert describe_facts(attrs, ["Directed_by", "Genre"]) == "director Bo Chen; genre Drama, War"
    assert describe_facts(attrs, ["Genre", "Starring", "Music_by"]) == "genre Drama, War; composer Kira Sato"
    assert describe_facts(attrs, ["Some_relation", "Based_on"]) == "some relation x; based on A Novel"
    assert describe_facts(attrs, ["Starring"]) == ""
    assert describe_facts(set(), ["Genre"]) == ""


def test_misinformed_trace_exact_text() -> None:
    task = _task(QueryType.MISINFORMED, {"multihop_info": [HOP], "misinformed": [LIE]})
    trace = reasoning_trace(task, ITEMS, ATTRS)
    assert trace == (
        "Recall The Silent River (1975): director Ann Lee, not Bo Chen.\n"  # the film as requests name it
        "Needs: genre Drama; director Ann Lee.\n"  # most specific fact last
        "director Ann Lee Painted Mirror, The (1987).\n"  # the deciding fact, then the choice
        "\\boxed{ Painted Mirror, The (1987)}"
    )
    assert parse_answer(trace) == ["Painted Mirror, The (1987)"]


def test_implicit_trace_starts_with_the_true_reference_fact() -> None:
    trace = reasoning_trace(_task(QueryType.IMPLICIT, {"multihop_info": [HOP]}), ITEMS, ATTRS)
    assert trace.splitlines()[0] == "Recall The Silent River (1975): director Ann Lee."
    # a reference item outside the catalog keeps its written title
    other = {**HOP, "movie": "Unknown Film (1960)"}
    trace = reasoning_trace(_task(QueryType.IMPLICIT, {"multihop_info": [other]}), ITEMS, ATTRS)
    assert trace.splitlines()[0] == "Recall Unknown Film (1960): director Ann Lee."
    # the catalog's spelling of the reference resolves to its natural-order name
    hop = {**HOP, "movie": "Silent River, The (1975)"}
    trace = reasoning_trace(_task(QueryType.IMPLICIT, {"multihop_info": [hop]}), ITEMS, ATTRS)
    assert trace.splitlines()[0] == "Recall The Silent River (1975): director Ann Lee."


def test_natural_title_moves_a_trailing_article_to_the_front() -> None:
    assert natural_title("Silent River, The (1975)") == "The Silent River (1975)"
    assert natural_title("Hollow Engine, A (2001)") == "A Hollow Engine (2001)"
    assert natural_title("Owl, An (1960)") == "An Owl (1960)"
    assert natural_title("Golden Harbor (1990)") == "Golden Harbor (1990)"
    assert natural_title("Bridge, The") == "Bridge, The"  # no year: left alone
    assert natural_title("Me, Myself and I (2000)") == "Me, Myself and I (2000)"


def test_knowledge_lines_state_every_fact_of_every_item_once() -> None:
    lines = knowledge_lines(ITEMS, ATTRS)
    assert lines == [  # genres are skipped by default: a request states its genre
        ("Recall The Silent River (1975): director", " Ann Lee."),
        ("Recall The Painted Mirror (1987): star", " Zoe Tan."),
        ("Recall The Painted Mirror (1987): director", " Ann Lee."),
        ("Recall Golden Harbor (1990): director", " Bo Chen."),
        ("Recall A Hollow Engine (2001): director", " Bo Chen."),
    ]
    every = knowledge_lines(ITEMS, ATTRS, skip=())
    assert every[0] == ("Recall The Silent River (1975): genre", " Drama.")  # broad relations first
    assert ("Recall A Hollow Engine (2001): genre", " Drama, War.") in every  # several values: one line
    assert len(every) == 2 + 3 + 2 + 2
    # the trace's reference line is a knowledge line's prefix + value
    first = reasoning_trace(_task(QueryType.IMPLICIT, {"multihop_info": [HOP]}), ITEMS, ATTRS).splitlines()[0]
    assert "".join(lines[0]) == first


def test_trace_without_conditions_uses_genre() -> None:
    task = _task(QueryType.INTEREST_BASED, conditions=())
    assert reasoning_trace(task, ITEMS, ATTRS) == (
        "genre Drama Painted Mirror, The (1987).\n\\boxed{ Painted Mirror, The (1987)}"
    )
    bare = reasoning_trace(task, ITEMS, {})  # no facts known: title only
    assert bare == "Painted Mirror, The (1987).\n\\boxed{ Painted Mirror, The (1987)}"


def test_candidate_prompt_with_and_without_facts() -> None:
    task = _task(QueryType.EXPLICIT)
    cfg = PromptConfig(candidate_facts=True)
    system, user = build_messages(task, ITEMS, ATTRS, cfg)
    assert system == {"role": "system", "content": cfg.system_prompt}
    assert user["role"] == "user"
    assert user["content"] == (
        "I'd like a drama film.\n"
        "Candidates (3):\n"
        "- genre Comedy; director Bo Chen Golden Harbor (1990)\n"
        "- genre Drama; director Ann Lee Painted Mirror, The (1987)\n"
        "- genre Drama, War; director Bo Chen Hollow Engine, A (2001)\n"
        "Choose one film from the candidates."
    )
    _, plain = build_messages(task, ITEMS, ATTRS, PromptConfig(candidate_facts=False, item_noun="book"))
    assert plain["content"] == (
        "I'd like a drama film.\n"
        "Candidates (3):\n"
        "- Golden Harbor (1990)\n"
        "- Painted Mirror, The (1987)\n"
        "- Hollow Engine, A (2001)\n"
        "Choose one book from the candidates."
    )


def test_history_block() -> None:
    task = _task(QueryType.EXPLICIT, history=(1, 3, 99, 4))
    _, user = build_messages(task, ITEMS, ATTRS, PromptConfig(history_items=2))
    assert user["content"].splitlines()[1] == "I have watched: Silent River, The (1975); Golden Harbor (1990)."
    _, user = build_messages(task, ITEMS, ATTRS, PromptConfig(history_items=10))  # unknown id 99 skipped
    assert user["content"].splitlines()[1] == (
        "I have watched: Silent River, The (1975); Golden Harbor (1990); Hollow Engine, A (2001)."
    )
    _, user = build_messages(task, ITEMS, ATTRS, PromptConfig(history_items=0))
    assert "I have watched" not in user["content"]


def test_open_task_prompt_asks_for_k_titles() -> None:
    (task,), _ = build_open_tasks([_task(QueryType.DEMOGRAPHICS).query])
    _, user = build_messages(task, ITEMS, ATTRS, PromptConfig(open_k=5))
    assert user["content"] == (
        "I'd like a drama film.\nRecommend up to 5 films, in one \\boxed{} separated by ';'."
    )


def test_trace_answer_parses_for_a_title_with_a_semicolon() -> None:
    items = {**ITEMS, 2: Item(2, "And God Created Woman (Et Dieu&#8230;Cr\ufffda la Femme) (1956)")}
    trace = reasoning_trace(_task(QueryType.EXPLICIT), items, ATTRS)
    assert parse_answer(trace) == [items[2].title]


# ---------------------------------------------------------------------------------- the synthetic world
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Release, dict[int, set[tuple[str, str]]]]:
    root: Path = tmp_path_factory.mktemp("world")
    folder = write_world(root, SyntheticWorldConfig(num_items=300, num_users=60, num_explicit=40,
                                                    num_implicit=20, num_misinformed=20, num_interest_records=8))
    kg: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for line in (folder / "kg_triples.tsv").read_text(encoding="utf-8").splitlines():
        item, relation, value = line.split("\t")
        kg[int(item)].add((relation, value))
    return load_release(root, "movie"), kg


def test_world_traces_and_facts(world: tuple[Release, dict[int, set[tuple[str, str]]]]) -> None:
    release, kg = world
    attrs = item_attributes(release.triples)
    tasks, _ = build_candidate_tasks(release.queries, list(release.items), attrs, 20, seed=0)
    cfg = PromptConfig(candidate_facts=True)
    seen_types = set()
    for task in tasks:
        seen_types.add(task.query_type)
        title = release.items[task.target_id].title
        trace = reasoning_trace(task, release.items, attrs)
        lines = trace.splitlines()
        assert lines[-1] == f"\\boxed{{ {title}}}"
        assert parse_answer(trace) == [title]
        hops = task.query.extra.get("multihop_info")
        if hops:  # implicit / misinformed: the referenced item's true fact comes first
            hop = hops[0]
            ref = _ref_id(release, hop["movie"])
            phrase = {"Directed_by": "director", "Starring": "star", "Written_by": "writer",
                      "Produced_by": "studio"}[hop["relation"]]
            fact = f"Recall {hop['movie']}: {phrase} {hop['person']}"  # the world's requests use natural order
            assert natural_title(release.items[ref].title) == hop["movie"]
            assert (hop["relation"], hop["person"]) in kg[ref]
            if task.query_type == "misinformed":
                wrong = task.query.extra["misinformed"][0]["person"]
                assert lines[0] == f"{fact}, not {wrong}."
            else:
                assert lines[0] == f"{fact}."
        # every candidate line shows exactly the KG's values for the relations the request is about
        relations = fact_relations(task)  # condition relations, most specific last
        assert set(relations) == ({r for r, _ in task.query.conditions} or {"Genre"})
        content = build_messages(task, release.items, attrs, cfg)[1]["content"].splitlines()
        start = content.index(f"Candidates ({len(task.candidate_ids)}):")
        n = len(task.candidate_ids)
        assert content[start + 1 + n] == "Choose one film from the candidates."
        for line, item_id in zip(content[start + 1 : start + 1 + n], task.candidate_ids, strict=True):
            facts = describe_facts(kg[item_id], relations)
            assert line == f"- {facts} {release.items[item_id].title}"
    assert seen_types == {t.value for t in QueryType}


def _ref_id(release: Release, natural_title: str) -> int:
    """Catalog id of a reference item written in natural order ("The X (1990)" is "X, The (1990)")."""
    name, _, year = natural_title.rpartition(" (")
    article, _, rest = name.partition(" ")
    wanted = {natural_title, f"{rest}, {article} ({year}"}
    (item_id,) = [i for i, it in release.items.items() if it.title in wanted]
    return item_id
