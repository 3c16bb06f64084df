"""Reasoning segmentation, literal title mentions, and token character spans with a real tokenizer."""

from __future__ import annotations

import pytest

from _tiny_tokenizer import tiny_sentencepiece_like, tiny_tokenizer
from rerec.data.answer import last_boxed
from rerec.rl.raae.segments import (
    PhraseIndex,
    find_title_mentions,
    last_box_span,
    overlapping,
    split_segments,
    title_variants,
)
from rerec.rl.raae.token_spans import TokenSpanError, TokenSpanMapper, TokenSpans

TRACE = (
    "Needs: director Ann Lee; genre Drama.\n"
    "Title Z (1990): director Bo Chen.\n"
    "   \n"
    "Silent River (1987): director Ann Lee. Match!\n"
    "So the answer is \\boxed{Silent River (1987)} for sure\n"
    "Hope this helps."
)


def _texts(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[s:e] for s, e in spans]


def test_line_segments_drop_blank_lines_and_the_answer_line() -> None:
    assert _texts(TRACE, split_segments(TRACE)) == [
        "Needs: director Ann Lee; genre Drama.",
        "Title Z (1990): director Bo Chen.",
        "Silent River (1987): director Ann Lee. Match!",
        "Hope this helps.",
    ]


def test_paragraph_and_sentence_segments() -> None:
    assert _texts(TRACE, split_segments(TRACE, "paragraph")) == [
        "Needs: director Ann Lee; genre Drama.\nTitle Z (1990): director Bo Chen.",
        "Silent River (1987): director Ann Lee. Match!",
        "Hope this helps.",
    ]
    assert _texts(TRACE, split_segments(TRACE, "sentence")) == [
        "Needs: director Ann Lee; genre Drama.",
        "Title Z (1990): director Bo Chen.",
        "Silent River (1987): director Ann Lee.",
        "Match!",
        "Hope this helps.",
    ]
    with pytest.raises(ValueError, match="segment_by"):
        split_segments(TRACE, "word")  # type: ignore[arg-type]


def test_answer_exclusion_follows_the_parsed_box() -> None:
    # The last *balanced* box is the answer (an unclosed later box does not count), as in parse_answer.
    text = "A.\nDraft \\boxed{Se7en (1995)} maybe\nB.\nfinal \\boxed{Face/Off"
    start, end = last_box_span(text)
    assert text[start + len("\\boxed{") : end - 1] == last_boxed(text) == "Se7en (1995)"
    assert _texts(text, split_segments(text)) == ["A.", "B.", "final \\boxed{Face/Off"]
    # A box spanning lines: every line it touches is the answer line.
    multi = "Why.\n\\boxed{Se7en\n(1995)} done\nAfter."
    assert _texts(multi, split_segments(multi)) == ["Why.", "After."]
    # No box: nothing excluded; empty text: no segment.
    assert _texts("a\n\nb  ", split_segments("a\n\nb  ")) == ["a", "b"]
    assert split_segments("") == [] and split_segments("\\boxed{X}") == []


def test_spans_are_exact_with_crlf_and_unicode() -> None:
    text = "  東京物語 (1953) fits.\r\n\tAmélie (2001)!\r\n\\boxed{Amélie (2001)}"
    spans = split_segments(text)
    assert _texts(text, spans) == ["東京物語 (1953) fits.", "Amélie (2001)!"]
    assert spans[0] == (2, 2 + len("東京物語 (1953) fits."))


TITLES = [
    "Se7en (1995)",
    "Face/Off (1997)",
    "What's Up, Doc? (1972)",
    "Star Wars: Episode IV (1977)",
    "Breakfast Club, The (1985)",
    "Alien (1979)",
    "It (1990)",
]


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("I pick Se7en (1995) here", "Se7en"),
        ("i pick SE7EN because", "SE7EN"),
        ("face/off (1997) is", "face/off"),
        ("Face / Off stars", "Face / Off"),
        ("What’s up, doc? is a comedy", "What’s up, doc?"),  # curly apostrophe, lower case
        ("STAR WARS: Episode IV (1977).", "STAR WARS: Episode IV"),
        ("I like The Breakfast Club.", "The Breakfast Club"),
        ("breakfast club, the (1985)!", "breakfast club, the"),
        ("Alien (1979) is scary", "Alien"),
        ("It (1990) is scary", "It"),
    ],
)
def test_title_mentions_literal_case_and_year_variants(text: str, title: str) -> None:
    found = find_title_mentions(text, TITLES)
    assert [text[s:e] for s, e, _ in found] == [title]


@pytest.mark.parametrize(
    "text",
    [
        "Aliens (1986) is not it",  # not inside a longer word; short "It" title is case-sensitive
        "Se7enth heaven",
        "Face Off",  # punctuation is part of the title
        "What is up doc",
        "SSe7en",
        "Star Wars (1977)",  # a prefix of a title is not the title
        "Breakfast at Tiffany's",
        ".*+?()[]{}|^$\\",  # regex metacharacters in the text are plain characters
    ],
)
def test_title_mentions_do_not_overmatch(text: str) -> None:
    assert find_title_mentions(text, TITLES) == []


def test_a_name_followed_by_another_year_is_another_item() -> None:
    text = "Hamlet (1996) is long; Hamlet (1990) is short; Hamlet is Danish."
    found = find_title_mentions(text, ["Hamlet (1990)"])
    assert [s for s, _, _ in found] == [text.index("Hamlet (1990)"), text.index("Hamlet is")]
    assert len(find_title_mentions(text, ["Hamlet"])) == 3  # no year on the title: every mention


def test_title_variants() -> None:
    assert title_variants("Breakfast Club, The (1985)") == ["Breakfast Club, The", "The Breakfast Club"]
    assert title_variants("The Matrix (1999)") == ["The Matrix", "Matrix, The"]
    assert title_variants("Seven (a.k.a. Se7en) (1995)") == ["Seven (a.k.a. Se7en)", "Seven"]
    assert title_variants("(1995)") == ["(1995)"]


def test_phrase_index_leftmost_longest_and_keys() -> None:
    index = PhraseIndex([("director", "D"), ("director of photography", "C"), ("Ann Lee", "P"), ("ann lee", "Q")])
    text = "Director of Photography: Ann  Lee; director ANN LEE."
    found = index.find(text)
    assert [(text[s:e], keys) for s, e, keys in found] == [
        ("Director of Photography", ("C",)),
        ("Ann  Lee", ("P", "Q")),
        ("director", ("D",)),
        ("ANN LEE", ("P", "Q")),
    ]


def test_overlapping() -> None:
    assert overlapping([(0, 5), (6, 10), (11, 12)], [(4, 7)]) == [True, True, False]
    assert overlapping([(0, 5)], []) == [False]


# ------------------------------------------------------------------------------------------------
# Token spans
# ------------------------------------------------------------------------------------------------


def _check_spans(tok, ids: list[int], expected_pieces: list[str]) -> None:
    spans = TokenSpanMapper(tok)(ids)
    assert spans.text == tok.decode(ids, skip_special_tokens=True)
    assert [spans.text[s:e] for s, e in zip(spans.starts, spans.ends)] == expected_pieces


def test_spans_of_merged_tokens_special_tokens_and_non_ascii() -> None:
    tok = tiny_tokenizer()
    text = "Amélie (2001) and 東京.\nSe7en (1995)"
    ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    spans = TokenSpanMapper(tok)(ids, text=text)
    assert spans.method == "bytes" and spans.text == text
    pieces = [text[s:e] for s, e in zip(spans.starts, spans.ends)]
    # Every character is covered in order; <|im_end|> (dropped by skip_special_tokens) is empty at the end.
    assert "".join(pieces) == text
    assert pieces[-1] == "" and spans.starts[-1] == len(text)
    assert any("東" in p for p in pieces) and any("é" in p for p in pieces)


def test_spans_when_bpe_splits_a_utf8_character() -> None:
    tok = tiny_tokenizer()
    # "Amélie 東" generated byte by byte: é = C3 A9 ("Ã", "©"), 東 = E6 9D B1 ("æ", "Ŀ", "±").
    tokens = ["<|im_start|>", "A", "m", "Ã", "©", "l", "i", "e", "Ġ", "æ", "Ŀ", "±", "<|im_end|>"]
    ids = tok.convert_tokens_to_ids(tokens)
    assert None not in ids and tok.unk_token_id not in ids
    # Each token of a split character covers that whole character; special tokens cover nothing.
    _check_spans(tok, ids, ["", "A", "m", "é", "é", "l", "i", "e", " ", "東", "東", "東", ""])


def test_spans_with_invalid_utf8_match_the_lossy_decode() -> None:
    tok = tiny_tokenizer()
    # A truncated 東 (E6 9D) then "B", a stray continuation byte (A9), "C": two U+FFFD as decode gives.
    ids = tok.convert_tokens_to_ids(["A", "æ", "Ŀ", "B", "©", "C"])
    _check_spans(tok, ids, ["A", "\ufffd", "\ufffd", "B", "\ufffd", "C"])


def test_spans_through_incremental_decoding_for_other_decoders() -> None:
    tok = tiny_sentencepiece_like()
    ids = tok.encode("Needs: director Amélie 東京 (1987)", add_special_tokens=False) + [tok.eos_token_id]
    mapper = TokenSpanMapper(tok)
    assert not mapper.byte_level
    spans = mapper(ids)
    assert spans.method == "stream"
    assert [spans.text[s:e] for s, e in zip(spans.starts, spans.ends)] == [
        "Needs:", " director", " Amélie", " 東京", " (1987)", ""
    ]


def test_prefix_decoding_fallback_and_error(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = tiny_tokenizer()
    ids = tok.encode("Se7en (1995) ok", add_special_tokens=False)
    mapper = TokenSpanMapper(tok)
    monkeypatch.setattr(mapper, "_by_bytes", lambda ids: None)
    monkeypatch.setattr("rerec.rl.raae.token_spans.DecodeStream", None)
    spans = mapper(ids)
    assert spans.method == "prefix"
    assert "".join(spans.text[s:e] for s, e in zip(spans.starts, spans.ends)) == "Se7en (1995) ok"
    garbage = TokenSpans("garbage", spans.starts, spans.ends, "prefix")
    monkeypatch.setattr(mapper, "_by_prefix", lambda ids: garbage)
    with pytest.raises(TokenSpanError, match="could not reproduce"):
        mapper(ids)


def test_caller_text_that_differs_is_not_trusted() -> None:
    tok = tiny_tokenizer()
    ids = tok.encode("Se7en (1995)", add_special_tokens=False)
    spans = TokenSpanMapper(tok)(ids, text="something else")
    assert spans.text == "Se7en (1995)"


def test_span_mapper_needs_a_fast_tokenizer() -> None:
    with pytest.raises(TypeError, match="fast tokenizer"):
        TokenSpanMapper(object())
