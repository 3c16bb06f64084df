"""RecDataModule: splits are disjoint, the warm-start share is carved out of train only, caps keep types."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerec.data.datamodule import RecDataModule
from rerec.data.synthetic import SyntheticWorldConfig

SMALL = SyntheticWorldConfig(num_items=300, num_users=80, num_explicit=120, num_implicit=40,
                             num_misinformed=30, num_interest_records=10)


def _dm(tmp: Path, **kw) -> RecDataModule:
    dm = RecDataModule(synthetic=SMALL, world_dir=str(tmp / "world"), num_candidates=10, **kw)
    dm.load()
    return dm


def _ids(tasks) -> set[str]:
    return {t.query_id for t in tasks}


def test_warm_start_share_is_disjoint_from_rl_val_and_test(tmp_path: Path) -> None:
    dm = _dm(tmp_path, warm_start_fraction=0.5)
    ws, rl, val, test = (_ids(dm.warm_start_tasks), _ids(dm.tasks["train"]), _ids(dm.tasks["val"]),
                         _ids(dm.tasks["test"]))
    assert ws and rl and val and test
    assert not (ws & rl) and not (ws & val) and not (ws & test) and not (rl & val) and not (rl & test)
    assert abs(len(ws) - len(rl)) <= 5 * 2  # half each, rounding per query type
    assert {t.query_type for t in dm.warm_start_tasks} == {t.query_type for t in dm.tasks["train"]}
    # val/test do not depend on the warm-start share
    shared = _dm(tmp_path, warm_start_fraction=0.0)
    assert _ids(shared.tasks["val"]) == val and _ids(shared.tasks["test"]) == test
    assert _ids(shared.warm_start_tasks) == _ids(shared.tasks["train"]) == ws | rl


def test_caps_keep_every_query_type_and_bad_fraction_raises(tmp_path: Path) -> None:
    dm = _dm(tmp_path, max_train_queries=10, max_eval_queries=10)
    assert len(dm.tasks["train"]) == 10 and len(dm.tasks["val"]) == 10
    assert len({t.query_type for t in dm.tasks["train"]}) == 5
    with pytest.raises(ValueError, match="warm_start_fraction"):
        RecDataModule(warm_start_fraction=1.0)
