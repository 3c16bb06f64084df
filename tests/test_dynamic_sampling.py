"""DAPO dynamic sampling: which groups are buffered, when the update is due, and that merging generation
batches of different widths leaves every row's log-probs unchanged."""

from __future__ import annotations

import pytest
import torch

from _tiny_hf import tiny_qwen2
from rerec.rl.dynamic_sampling import DynamicSampler, DynamicSamplingConfig, merge_update_batches
from rerec.rl.loss import zero_variance_groups
from rerec.rl.rollout import Rollouts
from rerec.rl.update import CompletionLogProbs, UpdateBatch
from test_update import V

PAD = 0


def _batch(prompt_len: int, valid: list[int], tag: float, group: int = 2, seed: int = 0) -> UpdateBatch:
    """Rows right-padded to max(valid) completion tokens, left-padded prompts of up to ``prompt_len``
    tokens (every prompt left-padded by one); advantages ``tag + row``."""
    g = torch.Generator().manual_seed(seed)
    n, t = len(valid), max(valid)
    prompt = torch.randint(5, V, (n // group, prompt_len), generator=g).repeat_interleave(group, 0)
    prompt_mask = torch.ones(n, prompt_len, dtype=torch.long)
    prompt[0::1, 0] = PAD
    prompt_mask[:, 0] = 0  # every prompt is left-padded by one
    mask = torch.arange(t)[None, :] < torch.tensor(valid)[:, None]
    completion = torch.randint(5, V, (n, t), generator=g).masked_fill(~mask, PAD)
    ro = Rollouts(torch.cat([prompt, completion], 1), torch.cat([prompt_mask, mask.long()], 1), prompt_len,
                  completion, mask, ~mask.all(1), [f"{tag}-{i}" for i in range(n)])
    adv = (tag + torch.arange(n, dtype=torch.float32))[:, None].expand(n, t) * mask
    return UpdateBatch(ro, adv, mask.clone())


@pytest.mark.parametrize("unit", [1, 2])
def test_merged_batches_keep_every_rows_log_probs(unit: int) -> None:
    a, b = _batch(3, [1, 3, 2, 2], 0.0), _batch(5, [4, 1], 10.0, seed=1)
    merged = merge_update_batches([a, b], PAD)
    assert merged.rollouts.prompt_length == 5 and merged.rollouts.completion_ids.shape == (6, 4)
    assert merged.rollouts.texts == a.rollouts.texts + b.rollouts.texts
    model = tiny_qwen2(V, seed=0, hidden_size=32, layers=1)
    logprobs = CompletionLogProbs(unit, 2, 1.0)
    whole = logprobs.all(model, merged.rollouts)
    for part, rows in ((a, slice(0, 4)), (b, slice(4, 6))):
        own = logprobs.all(model, part.rollouts)
        mask = part.rollouts.completion_mask
        t = mask.shape[1]
        torch.testing.assert_close(whole[rows, :t][mask], own[mask], atol=1e-5, rtol=1e-5)
        assert not merged.loss_mask[rows, t:].any() and not merged.advantages[rows, t:].any()
        torch.testing.assert_close(merged.advantages[rows, :t], part.advantages)


def _sampler(max_batches: int, other_rank: int | None = None) -> DynamicSampler:
    cap = (lambda v: v) if other_rank is None else (lambda v: min(v, other_rank))
    return DynamicSampler(DynamicSamplingConfig(enabled=True, max_num_gen_batches=max_batches), 2, PAD, cap)


def _kept_tags(batch: UpdateBatch) -> list[float]:
    return batch.advantages[:, 0].tolist()


def test_buffers_informative_groups_until_a_full_batch() -> None:
    """G = 2, B = 2 groups. Batch 1: only group 1 varies; batch 2: none; batch 3: both → the update holds
    batch 1's group 1 and batch 3's group 0 (batch 3's group 1 is surplus)."""
    ds = _sampler(max_batches=5)
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0])  # groups (1, 1) and (0, 1)
    informative = ~zero_variance_groups(rewards, 2)
    assert informative.tolist() == [False, True]  # a std over the wrong axis would flag the other group
    assert ds.offer(_batch(3, [2, 2, 2, 2], 0.0), informative, 2) is None
    assert ds.offer(_batch(3, [2, 2, 2, 2], 10.0), torch.tensor([False, False]), 2) is None
    batch, metrics = ds.offer(_batch(4, [3, 1, 2, 2], 20.0), torch.tensor([True, True]), 2)
    assert _kept_tags(batch) == [2.0, 3.0, 20.0, 21.0]
    assert metrics == {"train/dynamic_sampling/gen_batches": 3.0, "train/dynamic_sampling/extra_generations": 8.0,
                       "train/dynamic_sampling/groups_kept": 2.0, "train/dynamic_sampling/informative_frac": 0.5}
    # the buffer starts afresh: a fully informative first batch updates at once, extra generations 0
    batch, metrics = ds.offer(_batch(3, [2, 2, 2, 2], 30.0), torch.tensor([True, True]), 2)
    assert _kept_tags(batch) == [30.0, 31.0, 32.0, 33.0] and metrics["train/dynamic_sampling/extra_generations"] == 0


def test_limit_trains_on_what_was_found_or_on_the_last_batch() -> None:
    ds = _sampler(max_batches=2)
    assert ds.offer(_batch(3, [2, 2, 2, 2], 0.0), torch.tensor([False, True]), 2) is None
    batch, metrics = ds.offer(_batch(3, [2, 2, 2, 2], 10.0), torch.tensor([False, False]), 2)
    assert _kept_tags(batch) == [2.0, 3.0] and metrics["train/dynamic_sampling/groups_kept"] == 1.0
    assert ds.offer(_batch(3, [2, 2, 2, 2], 20.0), torch.tensor([False, False]), 2) is None
    batch, metrics = ds.offer(_batch(3, [2, 2, 2, 2], 30.0), torch.tensor([False, False]), 2)
    assert _kept_tags(batch) == [30.0, 31.0, 32.0, 33.0] and metrics["train/dynamic_sampling/groups_kept"] == 0.0


def test_every_rank_updates_on_the_fewest_groups_any_rank_found() -> None:
    """Another rank has found only one informative group: this rank waits for the limit and then trains
    on one group too (equal row counts keep the DDP backward calls in step)."""
    ds = _sampler(max_batches=2, other_rank=1)
    assert ds.offer(_batch(3, [2, 2, 2, 2], 0.0), torch.tensor([True, True]), 2) is None
    batch, _ = ds.offer(_batch(3, [2, 2, 2, 2], 10.0), torch.tensor([True, True]), 2)
    assert _kept_tags(batch) == [0.0, 1.0]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_num_gen_batches"):
        DynamicSamplingConfig(max_num_gen_batches=0)
