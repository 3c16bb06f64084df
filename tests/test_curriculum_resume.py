"""Resume tests: a Lightning run interrupted mid-epoch and resumed from its checkpoint serves exactly the
same query ids, in the same order and epochs, as an uninterrupted run with the same seed."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from _curriculum_fixtures import same_state
from _curriculum_lightning import MasteringPolicy, TaskDataModule
from rerec.data.curriculum import CurriculumConfig

CONFIG = CurriculumConfig(tau=0.1, return_after=2)
MAX_EPOCHS = 5


def trainer(**kwargs: Any) -> L.Trainer:
    kwargs.setdefault("max_epochs", MAX_EPOCHS)
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        reload_dataloaders_every_n_epochs=1,
        **kwargs,
    )


def fit(ckpt_path: str | None = None, **kwargs: Any) -> tuple[MasteringPolicy, TaskDataModule]:
    module, data = MasteringPolicy(), TaskDataModule(n=24, batch_size=4, config=CONFIG, seed=11)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pre-optimization state|LeafSpec|num_workers).*")
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint.*")
        trainer(**kwargs).fit(module, data, ckpt_path=ckpt_path)
    return module, data


Reference = tuple[MasteringPolicy, TaskDataModule, Path]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The reference run, with a checkpoint after every training step."""
    ckpt_dir = tmp_path_factory.mktemp("every_step")
    every_step = ModelCheckpoint(dirpath=ckpt_dir, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    module, data = fit(callbacks=[every_step], enable_checkpointing=True)
    return module, data, ckpt_dir


def test_reference_run_changes_the_active_set(uninterrupted: Reference) -> None:
    module, data, _ = uninterrupted
    history = data.curriculum_controller.history
    assert [h["epoch"] for h in history] == list(range(MAX_EPOCHS + 1))
    active = [h["active"] for h in history]
    assert active[0] == 24 and active[-1] < 24 and len(set(active)) >= 4  # shrinks as queries are mastered
    mean_difficulty = [h["mean_difficulty"] for h in history]
    assert mean_difficulty == sorted(mean_difficulty, reverse=True)
    steps_per_epoch = [sum(1 for e, _, _ in module.served if e == epoch) for epoch in range(MAX_EPOCHS)]
    assert steps_per_epoch == [-(-h["active"] // 4) for h in history[:MAX_EPOCHS]]
    assert module.epoch_metrics[-1]["curriculum/active"] == active[-1]


def test_resume_from_every_step_serves_the_same_sequence(
    uninterrupted: Reference, caplog: pytest.LogCaptureFixture
) -> None:
    """Every interruption point: mid-epoch, after an epoch's last batch (boundary still pending), and
    right after boundaries where the active set changed."""
    reference, reference_data, ckpt_dir = uninterrupted
    total = len(reference.served)
    with caplog.at_level(logging.WARNING, logger="rerec.data.curriculum_controller"):
        for step in range(1, total):
            resumed, data = fit(ckpt_path=str(ckpt_dir / f"step={step}.ckpt"))
            assert resumed.served == reference.served[step:], f"resumed after step {step}"
            assert same_state(data.curriculum_controller.state_dict(), reference_data.curriculum_controller.state_dict()), step
    assert "differs from the trainer's epoch" not in caplog.text


class _Crash(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("crash_at", [9, 12])  # mid-epoch 1; after epoch 1's last batch, before the boundary
def test_crash_and_resume(
    uninterrupted: Reference, tmp_path: Path, crash_at: int
) -> None:
    reference = uninterrupted[0]
    assert reference.served[crash_at - 1][0] == 1  # the chosen steps are in epoch 1 (6 steps per epoch 0, 1)
    every_step = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(callbacks=[every_step, _Crash(crash_at)], enable_checkpointing=True)
    resumed, _ = fit(ckpt_path=str(tmp_path / f"step={crash_at}.ckpt"))
    assert resumed.served == reference.served[crash_at:]


@pytest.mark.parametrize("stop_at", [8, 12])
def test_max_steps_stop_then_resume_from_last(
    uninterrupted: Reference, tmp_path: Path, stop_at: int
) -> None:
    """Lightning calls on_train_epoch_end when max_steps stops a run mid-epoch: no boundary may happen."""
    reference = uninterrupted[0]
    last = ModelCheckpoint(
        dirpath=tmp_path, every_n_train_steps=1, save_last=True, save_on_train_epoch_end=True
    )
    first, _ = fit(max_steps=stop_at, callbacks=[last], enable_checkpointing=True)
    resumed, _ = fit(ckpt_path=str(tmp_path / "last.ckpt"))
    assert first.served + resumed.served == reference.served


def test_resume_from_epoch_end_checkpoints(
    uninterrupted: Reference, tmp_path: Path
) -> None:
    reference = uninterrupted[0]
    per_epoch = ModelCheckpoint(
        dirpath=tmp_path, every_n_epochs=1, save_on_train_epoch_end=True, save_top_k=-1
    )
    fit(callbacks=[per_epoch], enable_checkpointing=True)
    checkpoints = sorted(tmp_path.glob("epoch=*.ckpt"))
    assert len(checkpoints) == MAX_EPOCHS
    for path in checkpoints[:2]:
        resumed, _ = fit(ckpt_path=str(path))
        step = int(path.stem.split("step=")[1])
        assert resumed.served == reference.served[step:], path.name


class _ForgetfulData(TaskDataModule):
    """A data module whose checkpoint hooks were not wired to the curriculum."""

    def state_dict(self) -> dict[str, Any]:
        return {}


def test_resume_without_curriculum_state_fails_loudly(
    uninterrupted: Reference
) -> None:
    ckpt = uninterrupted[2] / "step=9.ckpt"
    module, data = MasteringPolicy(), _ForgetfulData(n=24, batch_size=4, config=CONFIG, seed=11)
    with pytest.raises(RuntimeError, match="must save and restore the curriculum"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer().fit(module, data, ckpt_path=str(ckpt))


def test_limit_train_batches_ends_curriculum_epochs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rerec.data.curriculum_controller"):
        module, data = fit(limit_train_batches=2, max_epochs=3)
    assert [h["epoch"] for h in data.curriculum_controller.history] == [0, 1, 2, 3]
    assert [(e, len(ids)) for e, _, ids in module.served] == [(0, 4), (0, 4), (1, 4), (1, 4), (2, 4), (2, 4)]
    assert "differs from the trainer's epoch" not in caplog.text
