"""Each group's prompt computed once *with gradient checkpointing on*: the packed sequence gives the
plain path's log-probs, entropies and gradients (sdpa and eager attention, with and without LM-head
chunks), and a checkpointed policy's update shares the prompt (unit G)."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rerec.rl.logprobs import completion_logprobs
from rerec.rl.packed_logprobs import packed_attention_mask, packed_completion_logprobs, supports_packed_groups
from test_prompt_sharing import G, P, _batch


def _model(attn: str) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      attention_dropout=0.0)
    cfg._attn_implementation = attn
    model = Qwen2ForCausalLM(cfg)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


def test_packed_mask_by_hand() -> None:
    # one group: prompt [pad, a, b], two completions [c, pad] and [d, e]
    mask = packed_attention_mask(torch.tensor([[False, True, True]]), torch.tensor([[[True, False], [True, True]]]))
    expected = torch.tensor([
        # pad a  b  c  -  d  e   (keys)
        [1, 0, 0, 0, 0, 0, 0],  # pad: itself only
        [0, 1, 0, 0, 0, 0, 0],  # a
        [0, 1, 1, 0, 0, 0, 0],  # b
        [0, 1, 1, 1, 0, 0, 0],  # c: prompt + itself
        [0, 1, 1, 1, 1, 0, 0],  # completion padding: as a real token there (its output is unused)
        [0, 1, 1, 0, 0, 1, 0],  # d: prompt + itself, not completion 1
        [0, 1, 1, 0, 0, 1, 1],  # e
    ], dtype=torch.bool)
    assert torch.equal(mask[0, 0], expected)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("chunk", [None, 4])
def test_packed_groups_equal_the_plain_path_under_gradient_checkpointing(attn: str, chunk: int | None) -> None:
    model = _model(attn)
    assert model.is_gradient_checkpointing and supports_packed_groups(model)
    ids, mask, cmask = _batch()
    plain, plain_ent = completion_logprobs(model, ids, mask, P, temperature=0.7, with_entropy=True)
    (plain * cmask).sum().backward()
    plain_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    packed, packed_ent = packed_completion_logprobs(model, ids, mask, P, G, temperature=0.7, with_entropy=True,
                                                    logits_chunk=chunk)
    (packed * cmask).sum().backward()
    valid = cmask.bool()
    torch.testing.assert_close(packed[valid], plain[valid], atol=2e-6, rtol=0)
    torch.testing.assert_close(packed_ent[valid], plain_ent[valid], atol=2e-5, rtol=0)
    for p, g in zip(model.parameters(), plain_grads):
        torch.testing.assert_close(p.grad, g, atol=5e-5, rtol=1e-4)


def test_packed_groups_reject_rows_that_do_not_share_a_prompt_and_flash_attention() -> None:
    model = _model("sdpa")
    ids, mask, _ = _batch()
    ids[1, P - 1] = (ids[1, P - 1] + 1) % 300
    with pytest.raises(ValueError, match="share their prompt"):
        packed_completion_logprobs(model, ids, mask, P, G)
    model.config._attn_implementation = "flash_attention_2"
    assert not supports_packed_groups(model)


def test_a_checkpointed_lora_policy_shares_its_prompts_in_the_update() -> None:
    """The recipe's layout (LoRA, gradient checkpointing, G = 5, micro-batch 4): prompts shared by packing
    and the LM-head chunk applied (both were off with checkpointing)."""
    import peft

    from rerec.rl.module import completion_logprobs_for
    from rerec.rl.rollout import GenerationConfig
    from rerec.rl.update import BatchSplit

    policy = peft.get_peft_model(_model("sdpa"), peft.LoraConfig(r=4, target_modules="all-linear"))
    assert policy.is_gradient_checkpointing
    lp = completion_logprobs_for(policy, GenerationConfig(num_generations=5), BatchSplit(micro_batch_size=4), 64)
    assert (lp.unit, lp.packed, lp.logits_chunk, lp.micro_rows) == (5, True, 64, 5)
    policy.base_model.model.config._attn_implementation = "flash_attention_2"  # no custom masks
    assert completion_logprobs_for(policy, GenerationConfig(num_generations=5), BatchSplit(), None).unit == 1
