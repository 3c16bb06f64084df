"""Character span of every generated token in the decoded completion, to map text segments to tokens.

The text RAAE segments is ``tokenizer.decode(ids, skip_special_tokens=True)`` of a completion's real
tokens (what the policy module parses). Re-tokenising that text could give other ids than the model
generated, so spans come from decoding the generated ids incrementally instead:

1. **Byte-level BPE** (Qwen, Llama 3, GPT-2 style; the backend decoder is ``ByteLevel``): every
   token's bytes are looked up once per tokenizer (vocabulary tokens through the byte↔unicode table,
   added tokens as their UTF-8 content, special tokens as nothing); a row's bytes are decoded once and
   each token covers the characters its bytes belong to. A character split over several tokens (a
   multi-byte UTF-8 character cut by BPE) is covered by each of them. Invalid UTF-8 decodes to U+FFFD
   per maximal invalid subpart, as the tokenizer's own lossy decoding does.
2. Any other fast tokenizer: the backend's ``DecodeStream`` (incremental decoding); a token that
   produces no text yet (an incomplete character) is given the characters of the chunk that completes it.
3. Last resort: prefix decoding, ``decode(ids[:i+1])`` for every ``i`` (quadratic; a character split
   over tokens is given to the token that completes it only).

Each path's text is checked against ``tokenizer.decode``; the first that reproduces it is used, and a
row that none reproduces raises :class:`TokenSpanError` (RAAE counts and skips it). Special tokens
(``<|im_end|>``, which ``skip_special_tokens`` drops) get an empty span at their position.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # tokenizers >= 0.21
    from tokenizers.decoders import DecodeStream
except ImportError:  # pragma: no cover - older tokenizers: prefix decoding only
    DecodeStream = None  # type: ignore[assignment,misc]


class TokenSpanError(ValueError):
    """No decoding path reproduced the tokenizer's own decoding of a completion."""


@dataclass(frozen=True)
class TokenSpans:
    """Decoded text of a completion and the character span of each of its tokens.

    Attributes:
        text: ``tokenizer.decode(ids, skip_special_tokens=True)``.
        starts: (n,) int64, first character of token ``i`` in ``text``.
        ends: (n,) int64, one past its last character; ``starts[i] == ends[i]`` when the token produced
            no text (a special token).
        method: Which path produced the spans: ``"bytes"``, ``"stream"`` or ``"prefix"``.
    """

    text: str
    starts: np.ndarray
    ends: np.ndarray
    method: str

    def overlapping(self, start: int, end: int) -> np.ndarray:
        """(n,) bool: tokens that share at least one character with ``text[start:end]``."""
        return (self.starts < end) & (self.ends > start)


def _byte_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet: printable latin-1 bytes stand for themselves, the other bytes are
    shifted to code points 256+ (so every byte has a visible, non-space character)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


_UNICODE_TO_BYTE: dict[str, int] = {c: b for b, c in _byte_to_unicode().items()}


def _lossy_utf8(data: bytes) -> tuple[str, list[tuple[int, int]]]:
    """``data.decode("utf-8", "replace")`` and the byte ranges each U+FFFD replaced."""
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    pieces, invalid, pos = [], [], 0
    while True:
        try:
            pieces.append(data[pos:].decode("utf-8"))
            return "".join(pieces), invalid
        except UnicodeDecodeError as err:
            pieces.append(data[pos : pos + err.start].decode("utf-8"))
            pieces.append("\ufffd")
            invalid.append((pos + err.start, pos + err.end))
            pos += err.end


class TokenSpanMapper:
    """Maps generated token ids to character spans of their decoded text (see the module docstring).

    Args:
        tokenizer: A ``transformers`` fast tokenizer (has ``backend_tokenizer``).

    Build one per tokenizer and reuse it: the byte-level table (one entry per vocabulary id) is built on
    first use.
    """

    def __init__(self, tokenizer: Any) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(
                f"token spans need a fast tokenizer (PreTrainedTokenizerFast); got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self._backend = backend
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        self._special = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
        self._special |= {int(i) for i, tok in added.items() if getattr(tok, "special", False)}
        self._added = {int(i): str(tok) for i, tok in added.items()}
        decoder = json.loads(backend.to_str()).get("decoder") or {}
        self.byte_level = decoder.get("type") == "ByteLevel"
        self._token_bytes: list[bytes | None] | None = None

    def __call__(self, ids: Sequence[int], text: str | None = None) -> TokenSpans:
        """Spans of ``ids`` (the real completion tokens, padding removed).

        Args:
            ids: Generated token ids, in order.
            text: The caller's ``decode(ids, skip_special_tokens=True)`` if it has it (saves a decode);
                when it differs from what a path reproduces, the tokenizer's decode is the judge.
        """
        ids = [int(i) for i in ids]
        reference: str | None = None

        def matches(candidate: str) -> bool:
            nonlocal reference
            if text is not None and candidate == text:
                return True
            if reference is None:
                reference = self.tokenizer.decode(ids, skip_special_tokens=True)
            return candidate == reference

        if self.byte_level:
            spans = self._by_bytes(ids)
            if spans is not None and matches(spans.text):
                return spans
        if DecodeStream is not None:
            spans = self._by_stream(ids)
            if matches(spans.text):
                return spans
        spans = self._by_prefix(ids)
        if matches(spans.text):
            return spans
        raise TokenSpanError(
            f"could not reproduce the decoded text of a {len(ids)}-token completion "
            f"(decoder {'ByteLevel' if self.byte_level else 'other'}): {spans.text[:80]!r}"
        )

    # -- path 1: byte-level BPE ------------------------------------------------------------------

    def _table(self) -> list[bytes | None]:
        if self._token_bytes is None:
            vocab = self._backend.get_vocab(with_added_tokens=True)
            table: list[bytes | None] = [None] * (max(vocab.values(), default=-1) + 1)
            for token, i in vocab.items():
                if i in self._special:
                    table[i] = b""
                elif i in self._added:
                    table[i] = self._added[i].encode("utf-8")
                else:
                    try:
                        table[i] = bytes(_UNICODE_TO_BYTE[c] for c in token)
                    except KeyError:  # not a byte-level token: leave it to the other paths
                        table[i] = None
            self._token_bytes = table
        return self._token_bytes

    def _by_bytes(self, ids: list[int]) -> TokenSpans | None:
        table = self._table()
        parts = []
        for i in ids:
            part = table[i] if 0 <= i < len(table) else None
            if part is None:
                return None
            parts.append(part)
        data = b"".join(parts)
        text, invalid = _lossy_utf8(data)
        lens = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        byte_ends = np.cumsum(lens)
        byte_starts = byte_ends - lens
        # A byte starts a character unless it is a UTF-8 continuation byte; an invalid subpart is one
        # character (its U+FFFD).
        first = (np.frombuffer(data, dtype=np.uint8) & 0xC0) != 0x80
        for s, e in invalid:
            first[s] = True
            first[s + 1 : e] = False
        # chars_before[k]: number of characters starting in data[:k].
        chars_before = np.zeros(len(data) + 2, dtype=np.int64)
        np.cumsum(first, out=chars_before[1 : len(data) + 1])
        chars_before[-1] = chars_before[-2]
        empty = lens == 0
        # A token's first character is the one holding its first byte; its end is after the character
        # holding its last byte.
        starts = np.where(empty, chars_before[byte_starts], chars_before[byte_starts + 1] - 1)
        ends = np.where(empty, starts, chars_before[byte_ends])
        return TokenSpans(text, starts, ends, "bytes")

    # -- path 2: incremental decoding ------------------------------------------------------------

    def _by_stream(self, ids: list[int]) -> TokenSpans:
        stream = DecodeStream(skip_special_tokens=True)
        starts = np.zeros(len(ids), dtype=np.int64)
        ends = np.zeros(len(ids), dtype=np.int64)
        pieces: list[str] = []
        pos, pending = 0, []
        for k, i in enumerate(ids):
            starts[k] = ends[k] = pos
            if i in self._special:
                continue
            chunk = stream.step(self._backend, i)
            if not chunk:
                pending.append(k)  # an incomplete character: covered by the chunk that completes it
                continue
            pieces.append(chunk)
            for j in (*pending, k):
                starts[j], ends[j] = pos, pos + len(chunk)
            pending.clear()
            pos += len(chunk)
        return TokenSpans("".join(pieces), starts, ends, "stream")

    # -- path 3: prefix decoding -----------------------------------------------------------------

    def _by_prefix(self, ids: list[int]) -> TokenSpans:
        full = self.tokenizer.decode(ids, skip_special_tokens=True)
        starts = np.zeros(len(ids), dtype=np.int64)
        ends = np.zeros(len(ids), dtype=np.int64)
        done = 0  # characters of `full` produced by ids[:k]
        for k in range(len(ids)):
            prefix = self.tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
            common = 0
            for a, b in zip(prefix, full):
                if a != b:
                    break
                common += 1
            starts[k], ends[k] = done, max(done, common)
            done = ends[k]
        return TokenSpans(full if done == len(full) else full[:done], starts, ends, "prefix")
