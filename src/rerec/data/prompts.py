"""Chat prompts for the recommendation tasks and the reasoning traces used by the warm start.

Prompt (candidate task): the request, optionally the user's history, then the candidates one per line,
optionally preceded by their known facts for the relations the request is about (most specific
relation last, right before the title); the model reasons and ends with one title in ``\\boxed{}``.
Open task: the request (and history), answer with up to K titles in one box separated by ``;`` — or,
with ``answer_format: sep``, with the titles separated by ``[SEP]``, as RecBench+'s own prompts ask.

The reasoning trace of a candidate task (one segment per line, the answer line last) is what a correct
model would write, and is what RAAE segments:

    Recall The Silent River (1975): director Ann Lee, not Bo Chen.   (implicit/misinformed: the fact)
    Needs: genre Drama; director Ann Lee.                    (condition queries)
    director Ann Lee Painted Mirror, The (1987).             (the deciding fact, then the choice)
    \\boxed{ Painted Mirror, The (1987)}

A candidate line reads ``- genre Drama; director Ann Lee Painted Mirror, The (1987)``: the title follows
the most specific fact directly, so "which candidate has director Ann Lee" is answered by one lookup of
what follows that name (with the tiny model's entity tokens, one token). Queries whose negatives share
that fact but not another one stay ambiguous for a shallow reader — the room RL has to improve.
The box puts a space before the title so the title is the same (entity) token as in the list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rerec.data.answer import ANSWER_FORMATS, SEP, AnswerFormat
from rerec.data.records import Item
from rerec.data.tasks import Attributes, RecTask

# Words used for each knowledge-graph relation in prompts and traces (RecBench+ movie/book relations).
RELATION_PHRASES: dict[str, str] = {
    "Genre": "genre",
    "Directed_by": "director",
    "Starring": "star",
    "Written_by": "writer",
    "Produced_by": "studio",
    "Screenplay_by": "screenplay",
    "Narrated_by": "narrator",
    "Cinematography": "cinematographer",
    "Edited_by": "editor",
    "Music_by": "composer",
    "Distributed_by": "distributor",
    "Based_on": "based on",
    "Color_process": "color process",
    "Language": "language",
    "Production_Country": "country",
    "BELONGS_TO": "category",
    "WRITTEN_BY": "author",
}


BOXED_SYSTEM_PROMPT = (
    "You are a recommendation assistant. Reason step by step, one fact per line, "
    "then give your answer as \\boxed{title}."
)
SEP_SYSTEM_PROMPT = (
    "You are a recommendation assistant. Reason step by step, one fact per line, then give your answer "
    f"on the last line: the titles only, separated by {SEP}."
)


@dataclass
class PromptConfig:
    """How prompts are written.

    Args:
        system_prompt: System message of the chat template.
        candidate_facts: After each candidate, list its knowledge-graph values for the relations the
            request is about (genre when the request has no conditions). On for the synthetic world, where
            it turns the task into reading + multi-hop recall; off for the paper's setting, where the model
            must know the items.
        history_items: Show up to this many items of the source user's history (0 = no history block).
        open_k: Number of titles asked for in the open task.
        item_noun: What the items are called in prompts ("film", "book").
        answer_format: How the open task asks for its titles, and so how the reward reads them:
            ``boxed`` (one ``\\boxed{}``, titles separated by ``;``) or ``sep`` (titles separated by
            ``[SEP]``, as RecBench+'s prompts ask, so that the answers can be scored by the benchmark's
            own rules: ``python -m rerec.eval score``). With ``sep``, the default system prompt asks for
            the list on the last line instead of a box. The candidate task always uses the box.
        format_example: A title shown as an example of the answer format at the end of the request
            (``... end with the chosen title in \\boxed{}, e.g. \\boxed{Heat (1995)}``; the open task
            shows it in its own format): the request itself states the format a pretrained chat model
            must end with. ``null`` (default): no example, the request as before.
    """

    system_prompt: str = BOXED_SYSTEM_PROMPT
    candidate_facts: bool = False
    history_items: int = 0
    open_k: int = 10
    item_noun: str = "film"
    answer_format: AnswerFormat = "boxed"
    format_example: str | None = None

    def __post_init__(self) -> None:
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"prompt.answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}")
        if self.answer_format == "sep" and self.system_prompt == BOXED_SYSTEM_PROMPT:
            self.system_prompt = SEP_SYSTEM_PROMPT


_CATALOG_ARTICLE = re.compile(r"^(.*\S), (The|A|An) (\(\d{4}\))$")


def natural_title(title: str) -> str:
    """``"Silent River, The (1975)"`` → ``"The Silent River (1975)"`` (how requests name a film);
    other titles are returned unchanged."""
    m = _CATALOG_ARTICLE.match(title)
    return f"{m.group(2)} {m.group(1)} {m.group(3)}" if m else title


def _phrase(relation: str) -> str:
    return RELATION_PHRASES.get(relation, relation.replace("_", " ").lower())


# Order of relations in facts: broad first, most specific (people) last, next to the title.
_SPECIFICITY = {"Genre": 0, "Language": 0, "Production_Country": 0, "Color_process": 0, "BELONGS_TO": 0,
                "Produced_by": 1, "Distributed_by": 1, "Written_by": 2, "Screenplay_by": 2,
                "Starring": 3, "Directed_by": 4}


def fact_relations(task: RecTask) -> list[str]:
    """Relations whose facts are shown for ``task`` (its condition relations, else genre), broad first."""
    relations = list(dict.fromkeys(r for r, _ in task.query.conditions)) or ["Genre"]
    return sorted(relations, key=lambda r: _SPECIFICITY.get(r, 3))


def describe_facts(attrs: set[tuple[str, str]] | frozenset[tuple[str, str]], relations: Sequence[str]) -> str:
    """``"director Ann Lee; genre Drama, War"`` — the item's values for ``relations``, in that order."""
    parts = []
    for relation in relations:
        values = sorted(v for r, v in attrs if r == relation)
        if values:
            parts.append(f"{_phrase(relation)} {', '.join(values)}")
    return "; ".join(parts)


def build_messages(
    task: RecTask, items: Mapping[int, Item], attributes: Attributes, config: PromptConfig
) -> list[dict[str, str]]:
    """Chat messages (system + user) for one task; render them with the tokenizer's chat template."""
    q = task.query
    lines = [q.text.strip()]
    if config.history_items and q.history_item_ids:
        seen = [items[i].title for i in q.history_item_ids[: config.history_items] if i in items]
        lines.append("I have watched: " + "; ".join(seen) + ".")
    if task.candidate_ids:
        relations = fact_relations(task)
        lines.append(f"Candidates ({len(task.candidate_ids)}):")
        for item_id in task.candidate_ids:
            facts = describe_facts(attributes.get(item_id, set()), relations) if config.candidate_facts else ""
            # Facts before the title, the most specific one last: the title is "what follows that fact".
            lines.append(f"- {facts} {items[item_id].title}" if facts else f"- {items[item_id].title}")
        lines.append(f"Choose one {config.item_noun} from the candidates.")
        if config.format_example:
            lines[-1] += (f" Think briefly, then end with the chosen title in \\boxed{{}}, for example: "
                          f"\\boxed{{{config.format_example}}}")
    elif config.answer_format == "sep":
        lines.append(
            f"Recommend up to {config.open_k} {config.item_noun}s. Answer with their titles only, separated "
            f"by {SEP}, e.g. Title A (1999) {SEP} Title B (2004)."
        )
    else:
        lines.append(
            f"Recommend up to {config.open_k} {config.item_noun}s, in one \\boxed{{}} separated by ';'."
        )
        if config.format_example:
            lines[-1] += f" For example: \\boxed{{{config.format_example}; ...}}"
    return [
        {"role": "system", "content": config.system_prompt},
        {"role": "user", "content": "\n".join(lines)},
    ]


def reasoning_trace(task: RecTask, items: Mapping[int, Item], attributes: Attributes) -> str:
    """The correct reasoning + answer for a candidate task (the warm-start target)."""
    q = task.query
    lines = []
    hops = q.extra.get("multihop_info") or []
    title_of = {_normalised_natural(it.title): it for it in items.values()} if hops else {}
    for hop in hops:
        ref = title_of.get(_normalised_natural(str(hop.get("movie", ""))))
        # The film as a request names it (natural order): the same words as the query and the knowledge
        # lines of ``knowledge_lines``; "Recall" keeps the title from starting the completion, so it is
        # the same (entity) token as in the request.
        ref_title = natural_title(ref.title) if ref else str(hop.get("movie", ""))
        line = f"Recall {ref_title}: {_phrase(str(hop.get('relation')))} {hop.get('person')}"
        wrong = [m.get("person") for m in q.extra.get("misinformed") or [] if m.get("movie") == hop.get("movie")]
        if wrong:
            line += f", not {wrong[0]}"
        lines.append(line + ".")
    relations = fact_relations(task)
    if q.conditions:
        order = {r: i for i, r in enumerate(relations)}
        needs = "; ".join(f"{_phrase(r)} {v}" for r, v in sorted(q.conditions, key=lambda c: order[c[0]]))
        lines.append(f"Needs: {needs}.")
    target = items[task.target_id]
    # The deciding (most specific) fact of the target, then its title.
    key = describe_facts(attributes.get(task.target_id, set()), relations[-1:])
    lines.append(f"{key} {target.title}." if key else f"{target.title}.")
    lines.append(f"\\boxed{{ {target.title}}}")
    return "\n".join(lines)


def answer_trace(task: RecTask, items: Mapping[int, Item]) -> str:
    """The format warm start's target for a pretrained model: the query's own stated reason when the
    release has one (RecBench+'s demographic queries do), then the ground-truth title in the box:

        The user group of 25-34 year-olds likely has a strong sense of nostalgia for 80s films.
        \\boxed{Breakfast Club, The (1985)}

    It teaches the answer format on the training split's truth, nothing about the synthetic world's
    trace wording (:func:`reasoning_trace`).
    """
    reason = task.query.extra.get("reason")
    title = items[task.target_id].title
    lines = [reason.strip()] if isinstance(reason, str) and reason.strip() else []
    return "\n".join([*lines, f"\\boxed{{{title}}}"])


def knowledge_lines(
    items: Mapping[int, Item], attributes: Attributes, skip: Sequence[str] = ("Genre",)
) -> list[tuple[str, str]]:
    """The catalog's facts as ``("Recall The Silent River (1975): director", " Ann Lee.")`` pairs, one per
    item and relation (except ``skip``), in the words of the traces' reference lines: the tiny model's
    stand-in for a pretrained LLM's knowledge of the films, without which an implicit request cannot be
    resolved. Genres are skipped by default: a request states its genre, and no trace recalls one.
    """
    lines = []
    for item_id in sorted(items):
        attrs = {(r, v) for r, v in attributes.get(item_id, set()) if r not in skip}
        for relation in sorted({r for r, _ in attrs}, key=lambda r: (_SPECIFICITY.get(r, 3), r)):
            values = ", ".join(sorted(v for r, v in attrs if r == relation))
            lines.append((f"Recall {natural_title(items[item_id].title)}: {_phrase(relation)}", f" {values}."))
    return lines


def _normalised_natural(title: str) -> str:
    """Cheap key equating "The X (1990)" and "X, The (1990)" for reference items in traces."""
    t = title.strip().lower()
    for art in ("the ", "a ", "an "):
        if t.startswith(art):
            name, _, year = t[len(art):].rpartition(" (")
            return f"{name}, {art.strip()} ({year}" if name else t
    return t
