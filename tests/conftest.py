"""Test-wide settings: never touch the network, keep threads modest on the 2-core CI machine."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RECBENCH = SHARED / "data" / "recbench"


@pytest.fixture(scope="session")
def recbench_dir() -> Path:
    """The real RecBench+ sample files shipped in ``../shared`` (skips when absent)."""
    if not (RECBENCH / "movie" / "movies.dat").exists():
        pytest.skip("../shared/data/recbench is not beside this checkout")
    return RECBENCH
