"""Predictions files of any model on RecBench+ queries: read them into ``(id, raw answer)`` records.

Three kinds of line are read, and one file may mix them:

- the benchmark's own prediction files: ``{"id": ..., "response": "<raw model text>"}``, as JSON lines or
  as one JSON list of such objects;
- OpenAI batch output (JSON lines): ``custom_id`` is the query id and the answer is the message content
  of the first choice (``response.body.choices[0].message.content``; a ``null`` content, e.g. a
  refusal, is an empty answer). A line whose request failed (``error`` set, or a status code other than
  200) is a bad line;
- ReRec's own ``predictions.jsonl`` (``python -m rerec predict``): ``query_id``, ``type``, ``completion``.

Every bad line (invalid JSON, not an object, a missing or mistyped field, a failed request) raises
:class:`PredictionsFormatError` naming the file, the line and the field, or with ``on_error="skip"`` is
logged and counted (:class:`LineErrors`). Blank lines are ignored. In a JSON-list file the line is the
one where the bad element starts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rerec.data.movielens import PathLike, RecBenchFormatError

logger = logging.getLogger("rerec.eval")

OnError = Literal["raise", "skip"]
Source = Literal["benchmark", "openai_batch", "rerec"]
MAX_LOGGED_SKIPS = 20  # skipped lines kept in the summary; the count is always complete


class PredictionsFormatError(RecBenchFormatError):
    """A predictions file has a bad line; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Prediction:
    """One model answer.

    Attributes:
        id: The query id as the line gives it (a benchmark id, or ReRec's ``query_id``), as a string.
        response: The model's raw text.
        line: 1-based line of the file where the prediction starts.
        source: Which kind of line it came from: ``benchmark``, ``openai_batch`` or ``rerec``.
        query_type: The query type a ReRec line states (``None`` for the other kinds).
    """

    id: str
    response: str
    line: int
    source: Source
    query_type: str | None = None


@dataclass
class LineErrors:
    """Bad lines of one file: raised (``on_error="raise"``) or logged and counted (``"skip"``)."""

    path: Path
    on_error: OnError = "raise"
    count: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def bad(self, line: int, message: str, fieldname: str | None = None) -> None:
        """Report a bad line: raise, or log and count it."""
        error = PredictionsFormatError(self.path, message, line=line, field=fieldname)
        if self.on_error == "raise":
            raise error
        self.count += 1
        logger.warning("skipped line: %s", error)
        if len(self.details) < MAX_LOGGED_SKIPS:
            self.details.append({"line": line, "field": fieldname, "error": str(error)})


@dataclass
class PredictionsFile:
    """What :func:`read_predictions` read.

    Attributes:
        path: The file.
        predictions: The good lines, in file order.
        errors: The bad lines skipped (``on_error="skip"``); later stages add theirs (unknown ids, ...).
        sources: Number of predictions per kind of line.
    """

    path: Path
    predictions: list[Prediction]
    errors: LineErrors
    sources: dict[str, int]


def _show(value: Any, limit: int = 60) -> str:
    text = f"{type(value).__name__} {json.dumps(value, ensure_ascii=False, default=str)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _BadLine(Exception):
    def __init__(self, message: str, fieldname: str | None = None) -> None:
        super().__init__(message)
        self.fieldname = fieldname


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _BadLine(f"expected a string, got {_show(value)}", name)
    return value


def _query_id(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise _BadLine(f"expected a query id (string or integer), got {_show(value)}", name)
    return str(value).strip()


def _batch_content(obj: dict[str, Any]) -> str:
    """The answer of an OpenAI batch-output line (``response.body.choices[0].message.content``)."""
    if obj.get("error"):
        raise _BadLine(f"the request failed: {_show(obj['error'], 120)}", "error")
    response = obj.get("response")
    if not isinstance(response, dict):
        raise _BadLine(f"expected an object, got {_show(response)}", "response")
    status = response.get("status_code", 200)
    if status != 200:
        raise _BadLine(f"the request failed with status {status}", "response.status_code")
    body = response.get("body")
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _BadLine(f"expected a non-empty list of choices, got {_show(choices)}", "response.body.choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _BadLine(f"expected an object, got {_show(message)}", "response.body.choices[0].message")
    content = message.get("content")
    return "" if content is None else _text(content, "response.body.choices[0].message.content")


def parse_prediction(obj: Any, line: int) -> Prediction:
    """One line's object as a :class:`Prediction` (see the module docstring for the three kinds).

    Raises:
        _BadLine: Not a prediction of any kind, or a missing/mistyped field.
    """
    if not isinstance(obj, dict):
        raise _BadLine(f"expected a JSON object, got {_show(obj)}")
    if "custom_id" in obj:
        return Prediction(_query_id(obj["custom_id"], "custom_id"), _batch_content(obj), line, "openai_batch")
    if "query_id" in obj:
        qtype = obj.get("type")
        if qtype is not None and not isinstance(qtype, str):
            raise _BadLine(f"expected a query type name, got {_show(qtype)}", "type")
        return Prediction(_query_id(obj["query_id"], "query_id"), _text(obj.get("completion"), "completion"),
                          line, "rerec", qtype)
    if "id" in obj:
        return Prediction(_query_id(obj["id"], "id"), _text(obj.get("response"), "response"), line, "benchmark")
    raise _BadLine("not a prediction: expected {id, response}, an OpenAI batch line (custom_id) or a "
                   f"ReRec prediction (query_id, completion); keys: {sorted(obj)[:6]}")


def _list_elements(text: str, path: Path) -> list[tuple[int, Any]]:
    """``(line, element)`` of a JSON-list file; a malformed list raises (it cannot be skipped)."""
    decoder = json.JSONDecoder()
    out: list[tuple[int, Any]] = []
    pos = text.index("[") + 1
    expect_element = True
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        line = text.count("\n", 0, pos) + 1
        if pos >= len(text):
            raise PredictionsFormatError(path, "truncated JSON list (no closing ']')", line=line)
        if text[pos] == "]" and (not out or not expect_element):
            if text[pos + 1 :].strip():
                raise PredictionsFormatError(path, "text after the JSON list", line=line)
            return out
        if not expect_element:
            if text[pos] != ",":
                message = f"expected ',' or ']' between elements, got {text[pos]!r}"
                raise PredictionsFormatError(path, message, line=line)
            pos += 1
            expect_element = True
            continue
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise PredictionsFormatError(path, f"invalid JSON in the list: {e.msg}", line=e.lineno) from None
        out.append((line, value))
        expect_element = False


def read_predictions(path: PathLike, on_error: OnError = "raise") -> PredictionsFile:
    """Read a predictions file: JSON lines, or one JSON list (when the file starts with ``[``).

    Args:
        path: The file (named in every error).
        on_error: ``"raise"`` a :class:`PredictionsFormatError` on the first bad line, or ``"skip"`` it
            (logged, counted in the result's ``errors``).
    """
    path = Path(path)
    errors = LineErrors(path, on_error)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PredictionsFormatError(path, f"not UTF-8 at byte {e.start}", line=line) from None
    if not text.strip():
        raise PredictionsFormatError(path, "empty file (expected JSON lines or a JSON list of predictions)")
    if text.lstrip().startswith("["):
        objects = _list_elements(text, path)
    else:
        objects = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                objects.append((number, json.loads(raw)))
            except json.JSONDecodeError as e:
                errors.bad(number, f"invalid JSON at column {e.colno}: {e.msg}")
    predictions: list[Prediction] = []
    sources: dict[str, int] = {}
    for number, obj in objects:
        try:
            prediction = parse_prediction(obj, number)
        except _BadLine as bad:
            errors.bad(number, str(bad), bad.fieldname)
            continue
        predictions.append(prediction)
        sources[prediction.source] = sources.get(prediction.source, 0) + 1
    return PredictionsFile(path, predictions, errors, sources)
