"""``\\boxed{}`` answer parsing (``rerec.data.answer``): missing, several, nested, unclosed, empty, junk, lists."""

from __future__ import annotations

import pytest

from rerec.data.answer import MAX_ANSWER_CHARS, last_boxed, parse_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no box here", None),
        ("", None),
        ("\\boxed{Heat (1995)}", "Heat (1995)"),
        # several boxes: the last complete one wins (draft, then correction)
        ("first \\boxed{Heat (1995)} then \\boxed{Alien (1979)} done", "Alien (1979)"),
        # nested braces are kept and balanced
        ("\\boxed{\\text{Se7en} (1995)}", "\\text{Se7en} (1995)"),
        ("\\boxed{a {b {c}} d}", "a {b {c}} d"),
        # a later box that is never closed falls back to the earlier complete one
        ("\\boxed{Heat (1995)} and \\boxed{Alien (1979)", "Heat (1995)"),
        ("\\boxed{Heat (1995)} and \\boxed{Alien {1979}", "Heat (1995)"),
        # only an unclosed box: nothing
        ("\\boxed{Heat (1995)", None),
        ("\\boxed{", None),
        ("\\boxed{}", ""),
        # a box must be spelled exactly
        ("\\boxed {Heat}", None),
        ("boxed{Heat}", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is \\boxed{Heat (1995)}.", ["Heat (1995)"]),
        ("\\boxed{  Heat (1995)  }", ["Heat (1995)"]),  # surrounding space stripped
        ("\\boxed{Heat} ... \\boxed{Alien (1979)}", ["Alien (1979)"]),
        ("no answer at all", None),
        ("\\boxed{}", None),  # empty box
        ("\\boxed{   }", None),  # blank box
        ("\\boxed{ ; ;}", ["; ;"]),  # max_titles=1 takes the box whole; it matches no item
        ("\\boxed{Heat (1995)", None),  # unclosed
        ("}}}{{{ \\boxed{{}", None),  # junk: the only box is unbalanced
        # max_titles=1: the box is one title, ';' included (real titles contain ';'); a hedged list
        # "A; B" is one string that matches no catalog item, so it cannot be a lucky guess
        ("\\boxed{Heat (1995); Alien (1979)}", ["Heat (1995); Alien (1979)"]),
        ("\\boxed{Heat (1995);}", ["Heat (1995);"]),
    ],
)
def test_parse_answer_single_title(text: str, expected: list[str] | None) -> None:
    assert parse_answer(text, max_titles=1) == expected


def test_parse_answer_default_is_single_title() -> None:
    assert parse_answer("\\boxed{A; B}") == ["A; B"]
    assert parse_answer("\\boxed{A}") == ["A"]


def test_parse_answer_open_task_keeps_k_titles_in_order() -> None:
    text = "\\boxed{A (1990); B (1991) ;; C (1992); D (1993)}"
    assert parse_answer(text, max_titles=3) == ["A (1990)", "B (1991)", "C (1992)"]
    assert parse_answer(text, max_titles=10) == ["A (1990)", "B (1991)", "C (1992)", "D (1993)"]
    assert parse_answer(text, max_titles=None) == ["A (1990)", "B (1991)", "C (1992)", "D (1993)"]
    assert parse_answer("\\boxed{A (1990)}", max_titles=3) == ["A (1990)"]
    assert parse_answer("\\boxed{;}", max_titles=3) is None


def test_parse_answer_over_long_box_is_junk() -> None:
    limit = "x" * MAX_ANSWER_CHARS
    assert parse_answer(f"\\boxed{{{limit}}}") == [limit]  # at the limit: still an answer
    assert parse_answer(f"\\boxed{{{limit}y}}") is None  # one past: junk
    assert parse_answer(f"\\boxed{{{limit}y}}", max_titles=None) is None
