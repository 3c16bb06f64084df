"""Reliability pieces one by one (the CLI drills are in test_reliability_cli.py): random states,
run bookkeeping across segments, checkpoint checks and atomic checkpoint files, the stop signals and the
non-finite reward check."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rerec.rl.checkpointing import (
    AtomicCheckpointIO,
    CheckpointFileError,
    check_checkpoint_file,
    check_finite_checkpoint,
)
from rerec.rl.module import ReRecPolicy
from rerec.rl.rewards import ScoredRollouts
from rerec.rl.rng_state import capture_rng_state, restore_rng_state
from rerec.rl.run_stats import RunStats
from rerec.rl.update import NonFiniteTrainingError

SRC = Path(__file__).resolve().parents[1] / "src"


def _draws() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_random_states_restore_every_stream() -> None:
    buffer = io.BytesIO()
    torch.save(capture_rng_state(), buffer)
    first = _draws()
    buffer.seek(0)
    restore_rng_state(torch.load(buffer, weights_only=True))  # plain data: Lightning's weights_only read works
    assert _draws() == first


def test_run_stats_report_left_out_values_and_span_segments() -> None:
    stats = RunStats()
    stats.begin_segment("runs/v0")
    stats.record_step({"generate": 1.0}, 10, {"loss": 1.0, "kl": float("nan")})
    stats.record_step({"generate": 1.0}, 10, {"loss": float("inf"), "kl": 0.5})
    summary = stats.summary("completed")
    assert summary["train_metrics_mean"] == {"kl": 0.5, "loss": 1.0}
    assert summary["train_metrics_left_out"] == {"kl": 1, "loss": 1}
    saved = stats.state_dict()
    resumed = RunStats()
    resumed.load_state_dict(saved)
    resumed.begin_segment("runs/v1", "runs/v0/checkpoints/last.ckpt")
    resumed.record_step({"generate": 1.0}, 10, {"loss": 3.0})
    summary = resumed.summary("completed")
    assert summary["steps"] == 3 and summary["train_metrics_mean"]["loss"] == 2.0
    assert summary["wall_time_s"] >= saved["wall_time_s"]
    assert [(s["run_dir"], s["first_step"], s["last_step"], s["status"]) for s in summary["segments"]] == [
        ("runs/v0", 1, 2, "continued"), ("runs/v1", 3, 3, "completed")]


def test_a_checkpoint_with_non_finite_weights_is_refused() -> None:
    good = {"state_dict": {"w": torch.ones(2), "steps": torch.tensor([1])}, "optimizer_states": [{"state": {}}]}
    check_finite_checkpoint(good)
    bad = {"state_dict": {"w": torch.tensor([1.0, float("nan"), float("inf")])},
           "optimizer_states": [{"state": {0: {"exp_avg": torch.tensor([float("nan")])}}}]}
    with pytest.raises(FloatingPointError, match=r"at step 5: 2 tensors .*state_dict.w \(2 values\)"):
        check_finite_checkpoint(bad, step=5)


def _lightning_like(path: Path, **extra: object) -> Path:
    torch.save({"state_dict": {"w": torch.ones(2)}, "pytorch-lightning_version": "2.6.0", **extra}, path)
    return path


def test_checkpoint_file_faults_are_named(tmp_path: Path) -> None:
    good = _lightning_like(tmp_path / "good.ckpt", rerec={})
    check_checkpoint_file(good, ("rerec",))
    for special in ("last", "best", "s3://bucket/x.ckpt"):
        check_checkpoint_file(special)  # left to Lightning
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:-200])
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    _lightning_like(tmp_path / "other.ckpt")
    cases = {
        "missing.ckpt": "no such file",
        "empty.ckpt": "the file is empty",
        "cut.ckpt": "truncated or corrupt",
        "text.ckpt": "not a PyTorch checkpoint",
        "foreign.pt": "not a Lightning checkpoint",
        "other.ckpt": "of another model: it lacks ['rerec']",
    }
    for name, fault in cases.items():
        with pytest.raises(CheckpointFileError) as info:
            check_checkpoint_file(tmp_path / name, ("rerec",))
        assert str(info.value).startswith(f"checkpoint {tmp_path / name}: ") and fault in str(info.value), name


def test_checkpoint_io_writes_beside_the_destination_and_keeps_the_old_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "tmpdir"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    path = tmp_path / "ckpts" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}

    real_save = torch.save

    def half_written(obj: object, fh, *args, **kwargs) -> None:
        assert Path(fh.name).parent == path.parent  # the temporary file sits beside the checkpoint
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"] and not list(elsewhere.iterdir())


def _signal_script(body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent("""
        import os, signal, sys
        from rerec.signals import StopSignals
        before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}  # SIG_IGN under nohup
        stop = StopSignals(lambda signum, frame: print("first", signal.Signals(signum).name, flush=True))
        stop.install()
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_first_stop_signal_asks_the_second_ends_the_process(name: str) -> None:
    once = _signal_script(f"""
        os.kill(os.getpid(), signal.{name})
        print("still running, requested:", stop.requested, flush=True)
        stop.restore()
        print("restored:", signal.getsignal(signal.{name}) == before[signal.{name}])
    """)
    assert once.returncode == 0, once.stderr
    assert once.stdout.split("\n")[:3] == [f"first {name}", "still running, requested: True", "restored: True"]
    twice = _signal_script(f"""
        os.kill(os.getpid(), signal.{name})
        os.kill(os.getpid(), signal.{name})
        print("not reached", flush=True)
    """)
    assert twice.returncode == -getattr(__import__("signal"), name)  # killed by the signal itself
    assert twice.stdout == f"first {name}\n" and "exiting at once" in twice.stderr


def test_a_non_finite_reward_names_the_component_and_the_query() -> None:
    policy = ReRecPolicy()
    G = policy.generation.num_generations
    batch = [SimpleNamespace(query_id=f"q{i}") for i in range(2)]
    n = 2 * G
    values = torch.zeros(n)
    values[G + 1] = float("nan")
    scored = ScoredRollouts(total=values.clone(), components={"format": torch.zeros(n), "qas": values},
                            ndcg=torch.zeros(n), parsed=[None] * n, predicted_ids=[[]] * n, match_kinds=[[]] * n,
                            correct=[False] * n)
    texts = [f"completion {i}" for i in range(n)]
    with pytest.raises(NonFiniteTrainingError,
                       match=r"reward component 'qas' is nan for query 'q1' \(rollout 1, completion 'completion "):
        policy._check_rewards(scored, batch, texts)  # type: ignore[arg-type]
    scored.components["qas"] = torch.zeros(n)
    scored.total = torch.zeros(n)
    policy._check_rewards(scored, batch, texts)  # type: ignore[arg-type]
