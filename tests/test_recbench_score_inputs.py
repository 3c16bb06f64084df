"""Predictions files of every accepted kind, bad lines (named or counted), ids, and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _score_release import write_lines, write_score_release

from rerec.data.records import QueryType
from rerec.eval.__main__ import main
from rerec.eval.predictions import PredictionsFormatError, read_predictions
from rerec.eval.score import parse_query_type, score_predictions

GOOD = "Heat (1995) [SEP] Casino (1995)"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_score_release(tmp_path_factory.mktemp("release"))


def _batch(custom_id: Any, content: Any, **extra: Any) -> dict[str, Any]:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    return {"id": "batch_req_1", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": "r", "body": body}, "error": None, **extra}


def _score(release: Path, path: Path, qtype: str = "explicit", **kwargs: Any) -> dict[str, Any]:
    return score_predictions(release, "movie", qtype, path, "official", **kwargs)


# ---------------------------------------------------------------- the accepted kinds of line
def test_benchmark_json_lines_and_json_list_agree(release: Path, tmp_path: Path) -> None:
    rows = [{"id": 7, "response": GOOD}, {"id": "8", "response": "Clerks (1994) [SEP] Heat (1995)"}]
    lines = _score(release, write_lines(tmp_path / "p.jsonl", rows))
    listed = tmp_path / "p.json"
    listed.write_text(json.dumps(rows, indent=2))
    assert _score(release, listed)["means"] == lines["means"]
    assert lines["scored"] == 2 and lines["predictions"]["lines"] == {"benchmark": 2}


def test_openai_batch_output(release: Path, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "batch.jsonl", [_batch("7", GOOD), _batch(8, None)])
    read = read_predictions(path)
    assert [(p.id, p.response, p.source) for p in read.predictions] == [
        ("7", GOOD, "openai_batch"), ("8", "", "openai_batch")]  # a null content is an empty answer
    summary = _score(release, path)
    assert summary["means"]["ftr"] == 0.5 and summary["predictions"]["lines"] == {"openai_batch": 2}


def test_rerec_predictions_jsonl(release: Path, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "predictions.jsonl", [
        {"query_id": "movie/explicit/7", "type": "explicit", "completion": GOOD, "parsed_titles": None},
        {"query_id": "movie/demographics/30/1", "type": "demographics", "completion": "GoodFellas (1990)"},
    ])
    summary = _score(release, path)
    assert (summary["scored"], summary["predictions"]["other_type_lines"]) == (1, 1)
    demographics = _score(release, path, "demographics", out=tmp_path / "out")
    assert demographics["scored"] == 1
    # ReRec's id of record data_idx 30 is the benchmark's "1-1": its position in the file, not its data_idx
    row = json.loads((tmp_path / "out" / "per_query.jsonl").read_text())
    assert row["id"] == "1-1"


def test_ids_are_read_as_the_benchmark_numbers_them(release: Path, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"id": "0-0", "response": "x"}, {"id": " 1-01 ", "response": "y"}])
    summary = _score(release, path, "demographics", out=tmp_path / "out")
    assert summary["scored"] == 2 and summary["without_prediction"] == 1
    ids = [json.loads(line)["id"] for line in (tmp_path / "out" / "per_query.jsonl").read_text().splitlines()]
    assert ids == ["0-0", "1-1"]


# ---------------------------------------------------------------- bad lines
BAD_LINES = [
    ("{not json", r"p\.jsonl:2: invalid JSON at column 2"),
    ([1, 2], r"p\.jsonl:2: expected a JSON object, got list"),
    ({"id": 8}, r"p\.jsonl:2: field 'response': expected a string, got NoneType"),
    ({"id": 8, "response": ["a"]}, r"p\.jsonl:2: field 'response': expected a string"),
    ({"id": True, "response": "a"}, r"p\.jsonl:2: field 'id': expected a query id"),
    ({"id": "x", "response": "a"},
     r"p\.jsonl:2: field 'id': 'x' is not a query id of ExplicitQuery\.json \(expected a data_idx\)"),
    ({"id": 99, "response": "a"}, r"p\.jsonl:2: field 'id': no query '99' in ExplicitQuery\.json"),
    ({"id": "7", "response": "a"}, r"p\.jsonl:2: a second prediction for query '7' \(first on line 1\)"),
    ({"response": "a"}, r"p\.jsonl:2: not a prediction"),
    (_batch("8", "a", error={"code": "x", "message": "boom"}), r"p\.jsonl:2: field 'error': the request failed"),
    ({**_batch("8", "a"), "response": {"status_code": 500, "body": {}}},
     r"p\.jsonl:2: field 'response\.status_code': the request failed with status 500"),
    ({**_batch("8", "a"), "response": {"status_code": 200, "body": {"choices": []}}},
     r"p\.jsonl:2: field 'response\.body\.choices': expected a non-empty list"),
    ({"query_id": "movie/explicit/99", "type": "explicit", "completion": "a"},
     r"p\.jsonl:2: field 'query_id': 'movie/explicit/99' is not a query of ExplicitQuery\.json"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_bad_line_names_file_line_and_field(release: Path, tmp_path: Path, line: Any, message: str) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"id": 7, "response": GOOD}, line])
    with pytest.raises(PredictionsFormatError, match=message):
        _score(release, path)


def test_bad_lines_are_skipped_and_counted(release: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"id": 7, "response": GOOD}, "", *(line for line, _ in BAD_LINES), {"id": 8, "response": "Clerks (1994)"}]
    path = write_lines(tmp_path / "p.jsonl", rows)
    summary = _score(release, path, on_error="skip")
    assert summary["scored"] == 2
    assert summary["predictions"]["skipped_lines"] == len(BAD_LINES)
    assert [d["line"] for d in summary["predictions"]["skipped"]] == list(range(3, 3 + len(BAD_LINES)))
    assert "skipped line" in caplog.text


def test_a_json_list_names_the_line_of_the_bad_element(release: Path, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('[\n  {"id": 7, "response": "a"},\n\n  {"id": 8}\n]\n')
    with pytest.raises(PredictionsFormatError, match=r"p\.json:4: field 'response'"):
        _score(release, path)
    path.write_text('[\n  {"id": 7, "response": "a"},\n  {"id": 8, "respo')
    with pytest.raises(PredictionsFormatError, match=r"p\.json:3: invalid JSON in the list"):
        read_predictions(path, on_error="skip")  # a broken list cannot be skipped line by line
    path.write_text('[{"id": 7, "response": "a"},]')
    with pytest.raises(PredictionsFormatError, match="p.json:1: invalid JSON"):
        read_predictions(path)
    path.write_text('[]')
    assert read_predictions(path).predictions == []


def test_empty_and_undecodable_files(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("\n \n")
    with pytest.raises(PredictionsFormatError, match="p.jsonl: empty file"):
        read_predictions(path)
    path.write_bytes(b'{"id": 1, "response": "\xff"}\n')
    with pytest.raises(PredictionsFormatError, match=r"p\.jsonl:1: not UTF-8 at byte 23"):
        read_predictions(path)


# ---------------------------------------------------------------- query types and the command line
@pytest.mark.parametrize(
    ("name", "expected"),
    [("demographics", QueryType.DEMOGRAPHICS), ("UserBasedQuery", QueryType.DEMOGRAPHICS),
     ("userbasedquery.json", QueryType.DEMOGRAPHICS), ("interest-based", QueryType.INTEREST_BASED),
     ("InterestBasedQuery", QueryType.INTEREST_BASED), ("ExplicitQuery", QueryType.EXPLICIT),
     ("misinformed", QueryType.MISINFORMED)],
)
def test_query_type_names(name: str, expected: QueryType) -> None:
    assert parse_query_type(name) is expected


def test_command_line(release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"id": 7, "response": GOOD}])
    out = tmp_path / "out"
    args = ["score", str(release), "--domain", "movie", "--type", "ExplicitQuery", "--predictions", str(path)]
    assert main([*args, "--protocol", "official", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["protocol"] == "official" and summary["means"]["recall"] == 1.0  # by catalog id
    assert json.loads((out / "summary.json").read_text()) == summary
    row = json.loads((out / "per_query.jsonl").read_text())
    assert list(row)[:7] == [
        "id", "ndcg", "recall", "precision", "ftr", "satisfied_ratio", "existence_in_catalog_ratio"]
    assert main([*args, "--protocol", "corrected", "--k", "5"]) == 0
    assert "corrected protocol, k = 5: 1 of 2 queries scored" in capsys.readouterr().out
    assert main([*args[:6], "--type", "Nonsense", "--predictions", str(path), "--protocol", "official"]) == 2
    assert "unknown query type 'Nonsense'" in capsys.readouterr().err
    path.write_text('{"id": 7, "response": "a"}\n{oops\n')
    assert main([*args, "--protocol", "official"]) == 2
    assert "p.jsonl:2: invalid JSON" in capsys.readouterr().err
    assert main([*args, "--protocol", "official", "--on-error", "skip"]) == 0
    assert main([*args, "--protocol", "official", "--k", "-1"]) == 2


def test_a_missing_query_file_is_an_error(release: Path, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"id": 7, "response": GOOD}])
    with pytest.raises(FileNotFoundError, match="ImplicitQuery.json does not exist"):
        _score(release, path, "implicit")
