"""Warm start: the copy phase learns to copy, trace SFT lowers the loss, results are cached by key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rerec.rl.warm_start import (
    WarmStartConfig,
    _copy_loss,
    cache_key,
    recall_batch,
    repeat_batch,
    run_warm_start,
    sequences_fingerprint,
    vocab_fingerprint,
)


def _model(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg)


# (prompt ids, completion ids): the completion repeats the prompt's last two tokens, then "EOS" (63).
EXAMPLES = [([5 + i, 6 + i, 7 + i, 8 + (i % 7)], [7 + i, 8 + (i % 7), 63]) for i in range(40)]


def test_copy_phase_learns_to_copy() -> None:
    torch.manual_seed(0)
    model = _model()
    cfg = WarmStartConfig(steps=1, copy_steps=150, copy_length=6, copy_batch_size=32, lr=3e-3, cache_dir=None)
    gen = torch.Generator().manual_seed(123)
    before = _copy_loss(model, cfg, (3, 60), gen, 64).item()
    stats = run_warm_start(model, EXAMPLES, cfg, pad_id=0, copy_vocab=(3, 60))
    after = _copy_loss(model, cfg, (3, 60), torch.Generator().manual_seed(123), 64).item()
    assert before > 3.5  # ≈ log(57): chance
    assert after < 1.0 and stats["copy_final_loss"] < 1.0
    assert stats["copy_steps"] == 150 and stats["cached"] is False


def test_recall_phase_learns_a_content_lookup_at_its_own_lr() -> None:
    # The induction-head phase change: near chance for ~1,000 steps, then the lookup forms. The copy lr
    # (1e-3) is used, not the task lr (3e-3, at which it does not form in this budget).
    model = _model()
    cfg = WarmStartConfig(steps=1, copy_steps=1500, copy_task="recall", copy_length=6, copy_batch_size=32,
                          copy_lr=1e-3, lr=3e-3, cache_dir=None)
    before = _copy_loss(model, cfg, (3, 60), torch.Generator().manual_seed(123), 64).item()
    stats = run_warm_start(model, EXAMPLES, cfg, pad_id=0, copy_vocab=(3, 60))
    after = _copy_loss(model, cfg, (3, 60), torch.Generator().manual_seed(123), 64).item()
    assert before > 3.5  # ≈ log(57): chance
    assert after < 1.0 and stats["copy_final_loss"] < 1.0


def test_trace_sft_with_copy_mix_lowers_the_loss_and_caches(tmp_path: Path) -> None:
    cfg = WarmStartConfig(steps=60, copy_mix=True, copy_length=6, copy_batch_size=16, lr=3e-3,
                          batch_size=8, cache_dir=str(tmp_path))
    model = _model()
    key = cache_key("test", cfg)
    stats = run_warm_start(model, EXAMPLES, cfg, pad_id=0, key=key, copy_vocab=(3, 60))
    assert stats["final_loss"] < 3.0 and not stats["cached"]  # chance is log(64) ≈ 4.16
    assert stats["copy_mix_final_loss"] is not None
    assert (tmp_path / f"{key}-t{torch.get_num_threads()}.pt").exists()  # CPU: the thread count is in the key
    fresh = _model(seed=1)
    again = run_warm_start(fresh, EXAMPLES, cfg, pad_id=0, key=key, copy_vocab=(3, 60))
    assert again["cached"] is True and again["final_loss"] == stats["final_loss"]
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_knowledge_lines_are_learned_alongside_the_traces() -> None:
    # 30 "facts": prefix (film, relation) → value. Only the knowledge batches teach them; chance is ln 64.
    facts = [([10 + i, 50 + i % 3], [20 + (7 * i) % 30, 62]) for i in range(30)]
    cfg = WarmStartConfig(steps=300, knowledge_batch_size=16, lr=3e-3, batch_size=8, cache_dir=None)
    model = _model()
    stats = run_warm_start(model, EXAMPLES, cfg, pad_id=0, knowledge=facts)
    assert stats["knowledge_final_loss"] < 0.3
    model.eval()
    with torch.no_grad():
        ids = torch.tensor([p for p, _ in facts])
        predicted = model(input_ids=ids).logits[:, -1].argmax(-1)
    assert (predicted == torch.tensor([v[0] for _, v in facts])).float().mean() >= 0.9
    plain = run_warm_start(_model(), EXAMPLES, WarmStartConfig(steps=5, lr=3e-3, cache_dir=None), pad_id=0)
    assert plain["knowledge_final_loss"] is None
    with pytest.raises(ValueError, match="knowledge_batch_size"):  # before any (copy) training
        run_warm_start(_model(), EXAMPLES, WarmStartConfig(steps=1, copy_steps=10**6, knowledge_batch_size=4,
                                                           cache_dir=None), pad_id=0, copy_vocab=(3, 60))
    with pytest.raises(ValueError, match="knowledge_batch_size must be >= 0"):
        WarmStartConfig(knowledge_batch_size=-1)


def test_cpu_thread_count_is_part_of_the_cache_key(tmp_path: Path) -> None:
    cfg = WarmStartConfig(steps=2, lr=3e-3, batch_size=4, cache_dir=str(tmp_path))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert run_warm_start(_model(), EXAMPLES, cfg, pad_id=0, key="k")["cached"] is False
        assert run_warm_start(_model(), EXAMPLES, cfg, pad_id=0, key="k")["cached"] is True
        torch.set_num_threads(2)  # another reduction order: trained, not loaded
        assert run_warm_start(_model(), EXAMPLES, cfg, pad_id=0, key="k")["cached"] is False
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["k-t1.pt", "k-t2.pt"]


def test_repeat_batch_labels_the_repeat_after_its_first_token() -> None:
    ids, labels = repeat_batch((3, 60), 5, 4, torch.Generator().manual_seed(0))
    assert ids.shape == labels.shape == (4, 10)
    assert torch.equal(ids[:, :5], ids[:, 5:])
    assert (labels[:, :6] == -100).all() and torch.equal(labels[:, 6:], ids[:, 6:])


def test_recall_batch_values_follow_their_key_and_need_a_content_lookup() -> None:
    pairs, batch = 6, 64
    ids, labels = recall_batch((3, 60), pairs, batch, torch.Generator().manual_seed(0))
    assert ids.shape == labels.shape == (batch, 4 * pairs)
    assert int(ids.min()) >= 3 and int(ids.max()) < 60
    offsets = set()
    for row in range(batch):
        first = ids[row, : 2 * pairs].tolist()
        keys, values = first[0::2], first[1::2]
        assert len(set(keys)) == pairs  # distinct keys: each value is determined by its key
        lookup = dict(zip(keys, values))
        labelled = (labels[row] != -100).nonzero().flatten().tolist()
        # Exactly the values of the second half, each equal to the value its key had in the first half.
        assert labelled == list(range(2 * pairs + 1, 4 * pairs, 2))
        for pos in labelled:
            key = int(ids[row, pos - 1])
            assert int(labels[row, pos]) == int(ids[row, pos]) == lookup[key]
            offsets.add(pos - (2 * keys.index(key) + 1))
        assert sorted(ids[row, 2 * pairs :: 2].tolist()) == sorted(keys)  # the same pairs, reordered
    assert len(offsets) > pairs  # no fixed distance back to copy from: the positional shortcut fails


def test_unknown_copy_task_is_named() -> None:
    with pytest.raises(ValueError, match="copy_task.*'reverse'"):
        WarmStartConfig(copy_task="reverse")
    with pytest.raises(ValueError, match="distinct keys"):
        recall_batch((3, 6), 5, 2, torch.Generator())


def test_copy_needs_a_vocabulary_and_null_cache_dir_strings_mean_none() -> None:
    with pytest.raises(ValueError, match="copy_vocab"):
        run_warm_start(_model(), EXAMPLES, WarmStartConfig(steps=1, copy_mix=True, cache_dir=None), pad_id=0)
    assert WarmStartConfig(cache_dir="None").cache_dir is None
    assert cache_key("a", {"x": 1}) == cache_key("a", {"x": 1}) != cache_key("a", {"x": 2})


class _Vocab:
    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def test_vocab_fingerprint_changes_with_any_token_id() -> None:
    # The tiny tokenizer is trained on the task prompts: a data cap that changes them changes the ids, and
    # cached warm-start weights must then not be reused (they were once, silently: held-out accuracy 0.0).
    base = {"a": 0, "b": 1, "c": 2}
    assert vocab_fingerprint(_Vocab(base)) == vocab_fingerprint(_Vocab(dict(reversed(list(base.items())))))
    assert vocab_fingerprint(_Vocab(base)) != vocab_fingerprint(_Vocab({"a": 0, "b": 2, "c": 1}))
    assert vocab_fingerprint(_Vocab(base)) != vocab_fingerprint(_Vocab({**base, "d": 3}))


def test_sequences_fingerprint_changes_with_any_training_token() -> None:
    # A trace-format change is code, not config: the cache key must still see it.
    facts = [([10, 11], [20, 62])]
    base = sequences_fingerprint(EXAMPLES, facts)
    assert base == sequences_fingerprint(list(EXAMPLES), list(facts))
    assert base != sequences_fingerprint(EXAMPLES, [([10, 11], [21, 62])])
    assert base != sequences_fingerprint(EXAMPLES[:-1], facts)
    assert base != sequences_fingerprint(EXAMPLES + facts)  # which list a pair belongs to matters
    assert sequences_fingerprint([([1], [2, 3])]) != sequences_fingerprint([([1, 2], [3])])  # prompt/completion split


def test_micro_batched_completion_loss_equals_the_models_own_mean_and_gradient():
    """The micro-batched, completion-only loss is HF's mean over labelled tokens (not a mean of
    micro-batch means: rows with different completion lengths weigh by their tokens) and so is its
    gradient, for any micro-batch size."""
    import copy

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rerec.rl.warm_start import completion_token_loss

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1))
    ids = torch.randint(0, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 4:9] = ids[0, 4:9]   # 5 completion tokens
    labels[1, 8:9] = ids[1, 8:9]   # 1
    labels[2, 5:7] = ids[2, 5:7]   # 2 (then padding)
    ref = copy.deepcopy(model)
    expected = ref(input_ids=ids, attention_mask=mask, labels=labels).loss
    expected.backward()
    for micro in (1, 2, 3):
        model.zero_grad()
        value = completion_token_loss(model, ids, mask, labels, micro)
        assert abs(value - expected.item()) < 1e-5, micro
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-6), (micro, name)
