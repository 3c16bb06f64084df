"""The settings and the result record both benchmark workers share (``vs_trl.py`` runs each worker in
its own process and reads the record it prints)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunSettings", "WorkerResult", "prompt_ids_digest", "reward_fn", "pin_threads"]


@dataclass
class RunSettings:
    """One trainer run: the same on both sides of a comparison."""

    model_dir: str
    prompts: list[str]
    num_generations: int = 5          # G
    max_completion_length: int = 48   # T (forced: EOS is blocked before T by the saved generation config)
    micro_batch_size: int = 40        # rows per forward/backward (ReRec micro-batch = TRL's per-device batch)
    temperature: float = 1.0
    num_iterations: int = 1           # μ
    beta: float = 0.0
    learning_rate: float = 1e-5
    mode: str = "full"                # full | lora
    logits_chunk: int | None = None   # ReRec's logits_chunk_size (TRL has its own chunked kernel)
    gradient_checkpointing: bool = False  # on both sides when set
    packed_groups: bool = False       # ReRec with checkpointing: each group packed into one sequence (as
                                      # ReRecPolicy does); False: every row alone (ReRec before packing)
    lora_dropout: float = 0.05
    steps: int = 6
    threads: int = 1
    seed: int = 0

    @property
    def batch_prompts(self) -> int:
        """B: every step uses all the prompts."""
        return len(self.prompts)


@dataclass
class WorkerResult:
    """What one worker measured, per optimizer step (seconds) and for the process."""

    trainer: str
    step_s: list[float] = field(default_factory=list)
    generate_s: list[float] = field(default_factory=list)
    score_s: list[float] = field(default_factory=list)
    update_s: list[float] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    peak_rss_gb: float = 0.0
    prompt_ids_sha: str = ""
    versions: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self))


def prompt_ids_digest(ids: list[list[int]]) -> str:
    """A digest of the prompts' token ids (the driver asserts both trainers saw the same)."""
    return hashlib.sha256(json.dumps([list(map(int, row)) for row in ids]).encode()).hexdigest()


def reward_fn(texts: list[str]) -> list[float]:
    """The same cheap reward on both sides: the share of distinct characters, which varies inside a
    group so advantages are not all zero."""
    return [len(set(t)) / (len(t) + 1) for t in texts]


def pin_threads(n: int) -> None:
    """Pin intra-op threads (both trainers run with the same count)."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
