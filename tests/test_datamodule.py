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
    ws, rl, val, test = (_ids(dm.data.warm_start_tasks), _ids(dm.data.tasks["train"]), _ids(dm.data.tasks["val"]),
                         _ids(dm.data.tasks["test"]))
    assert ws and rl and val and test
    assert not (ws & rl) and not (ws & val) and not (ws & test) and not (rl & val) and not (rl & test)
    assert abs(len(ws) - len(rl)) <= 5 * 2  # half each, rounding per query type
    assert {t.query_type for t in dm.data.warm_start_tasks} == {t.query_type for t in dm.data.tasks["train"]}
    # val/test do not depend on the warm-start share
    shared = _dm(tmp_path, warm_start_fraction=0.0)
    assert _ids(shared.data.tasks["val"]) == val and _ids(shared.data.tasks["test"]) == test
    assert _ids(shared.data.warm_start_tasks) == _ids(shared.data.tasks["train"]) == ws | rl


def test_caps_keep_every_query_type_and_bad_fraction_raises(tmp_path: Path) -> None:
    dm = _dm(tmp_path, max_train_queries=10, max_eval_queries=10)
    assert len(dm.data.tasks["train"]) == 10 and len(dm.data.tasks["val"]) == 10
    assert len({t.query_type for t in dm.data.tasks["train"]}) == 5
    with pytest.raises(ValueError, match="warm_start_fraction"):
        RecDataModule(warm_start_fraction=1.0)


def test_one_title_matcher_serves_ground_truth_and_rewards(tmp_path: Path) -> None:
    """The release's matcher (which matched the ground truth) is the one the policy gets, and a threshold
    of 0.0 is rejected instead of silently becoming the default on one of two matchers."""
    dm = _dm(tmp_path, match_threshold=0.7)
    assert dm.data.matcher is dm.release.matcher and dm.data.matcher.threshold == 0.7
    with pytest.raises(ValueError, match="threshold"):
        _dm(tmp_path, match_threshold=0.0)


def test_data_contract_fingerprint_follows_the_prompt_settings(tmp_path: Path) -> None:
    a, b = _dm(tmp_path), _dm(tmp_path)
    assert a.data.fingerprint == b.data.fingerprint
    assert _dm(tmp_path, negatives="hard").data.fingerprint != a.data.fingerprint
    assert a.data.titles_per_answer == 1
