"""Read an offline W&B run back: the records of its ``run-<id>.wandb`` file.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB
blocks of LevelDB-log records (4-byte CRC, 2-byte length, 1-byte type: full/first/middle/last), each
payload a serialized ``wandb_internal_pb2.Record`` (history rows, summary, config, files...). wandb no
longer ships a reader, so the tests carry this small one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """Every ``Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B" and magic == 0xBEE1 and version == 0, (ident, magic, version)
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            pending += payload
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        pending = b""
        yield record


@dataclass
class OfflineRun:
    """What an offline run holds: its history rows, final summary, config and run-level facts."""

    folder: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    project: str = ""
    group: str = ""
    exit_code: int | None = None
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (name, type)

    @property
    def history_keys(self) -> set[str]:
        return {k for row in self.history for k in row}


def _key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


def read_offline_run(folder: Path) -> OfflineRun:
    """Parse ``folder`` (``wandb/offline-run-*``)."""
    run = OfflineRun(folder)
    (path,) = folder.glob("run-*.wandb")
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
            for item in record.summary.remove:
                run.summary.pop(_key(item), None)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "run":
            run.name, run.project, run.group = record.run.display_name, record.run.project, record.run.run_group
            for item in record.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "artifact":
            run.artifacts.append((record.artifact.name, record.artifact.type))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run
