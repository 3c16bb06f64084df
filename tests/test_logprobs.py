"""Completion log-probs of ``rerec.rl.logprobs``: alignment, padding side, micro-batching, temperature, entropy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from rerec.rl.logprobs import completion_logprobs, entropy_from_logits, position_ids_from_mask, selective_log_softmax


class CopyLM(nn.Module):
    """Logit 2 on the current input token, 0 elsewhere (vocabulary 3): a model whose log-probs are hand-computable."""

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None
    ) -> Tensor:
        return 2.0 * nn.functional.one_hot(input_ids, 3).float()


class PositionalLM(nn.Module):
    """Logits = token table + absolute position table, so any shift of ``position_ids`` changes them.

    With ``honour_keep`` it returns only the last ``logits_to_keep`` columns, like Hugging Face models.
    """

    def __init__(self, vocab: int = 11, max_pos: int = 16, honour_keep: bool = True) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.tok = nn.Parameter(torch.randn(vocab, vocab, generator=gen))
        self.pos = nn.Parameter(torch.randn(max_pos, vocab, generator=gen))
        self.batch_sizes: list[int] = []
        self.kept: list[int] = []
        if not honour_keep:
            self.forward = self._forward_no_keep  # type: ignore[method-assign]

    def _logits(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        self.batch_sizes.append(input_ids.shape[0])
        return self.tok[input_ids] + self.pos[position_ids]

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, logits_to_keep: int = 0
    ) -> Tensor:
        self.kept.append(logits_to_keep)
        logits = self._logits(input_ids, position_ids)
        return logits[:, -logits_to_keep:] if logits_to_keep else logits

    def _forward_no_keep(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        return self._logits(input_ids, position_ids)


def test_alignment_hand_values_and_temperature():
    # Prompt [0, 1] (P = 2), completion [1, 0]. Logits at column j are 2*onehot(input_ids[j]).
    # t=0 reads column P-1=1 (token 1) for label 1: log_softmax([0,2,0])[1] = 2 - log(e^2 + 2) = -0.239545
    # t=1 reads column 2 (token 1) for label 0:      log_softmax([0,2,0])[0] = -log(e^2 + 2) = -2.239545
    # (an off-by-one reading column P+t would give -0.239545 at t=1)
    ids = torch.tensor([[0, 1, 1, 0]])
    mask = torch.ones_like(ids)
    logps, ent = completion_logprobs(CopyLM(), ids, mask, prompt_length=2, with_entropy=True)
    torch.testing.assert_close(logps, torch.tensor([[-0.239545, -2.239545]]), atol=1e-6, rtol=0)
    # Entropy of softmax([2,0,0]) = (0.786986, 0.106507, 0.106507): -sum p log p = 0.665573
    torch.testing.assert_close(ent, torch.tensor([[0.665573, 0.665573]]), atol=1e-6, rtol=0)
    # Temperature 2 halves the logits: log_softmax([0,1,0]) = (-1.551445, -0.551445, -1.551445)
    logps_t, _ = completion_logprobs(CopyLM(), ids, mask, prompt_length=2, temperature=2.0)
    torch.testing.assert_close(logps_t, torch.tensor([[-0.551445, -1.551445]]), atol=1e-6, rtol=0)


def test_entropy_of_known_distributions():
    # Uniform over V=4: log 4; a (near) one-hot: ~0.
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(entropy_from_logits(logits), torch.tensor([math.log(4), 0.0]), atol=1e-6, rtol=0)


def test_selective_log_softmax_matches_log_softmax_gather():
    gen = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        logits = (5 * torch.randn(3, 4, 17, generator=gen)).to(dtype).requires_grad_(True)
        index = torch.randint(0, 17, (3, 4), generator=gen)
        got = selective_log_softmax(logits, index)
        want = torch.log_softmax(logits.float(), -1).gather(-1, index[..., None]).squeeze(-1)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        (g_got,) = torch.autograd.grad(got.sum(), logits)
        (g_want,) = torch.autograd.grad(want.sum(), logits)
        torch.testing.assert_close(g_got.float(), g_want.float(), atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match="logits"):
        selective_log_softmax(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def _padded_batch() -> tuple[Tensor, Tensor, int, list[tuple[list[int], list[int]]]]:
    """Two rows (prompt, completion): row 1's prompt is left-padded by 2, its completion right-padded by 1."""
    rows = [([3, 4, 5, 6, 7], [8, 9, 2]), ([5, 6, 7], [8, 2])]
    pad = 1
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 2], [pad, pad, 5, 6, 7, 8, 2, pad]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 0]])
    return ids, mask, 5, rows


def test_position_ids_ignore_left_padding():
    _, mask, _, _ = _padded_batch()
    # Row 1: cumsum = (0,0,1,2,3,4,5,5) - 1, clamped -> (0,0,0,1,2,3,4,4)
    torch.testing.assert_close(position_ids_from_mask(mask)[1], torch.tensor([0, 0, 0, 1, 2, 3, 4, 4]))


@pytest.mark.parametrize("honour_keep", [True, False])
def test_alignment_padding_and_micro_batches_with_positional_model(honour_keep: bool):
    model = PositionalLM(honour_keep=honour_keep)
    ids, mask, P, rows = _padded_batch()
    logps, _ = completion_logprobs(model, ids, mask, prompt_length=P, micro_batch_size=1)
    assert model.batch_sizes == [1, 1]
    if honour_keep:
        assert model.kept == [4, 4]  # T + 1 = 3 + 1 columns requested
    # Alignment against the full logits with mask-derived positions:
    # logps[:, t] = log_softmax(logits[:, P+t-1])[ids[:, P+t]]
    full = torch.log_softmax(model.tok[ids] + model.pos[position_ids_from_mask(mask)], -1)
    for t in range(ids.shape[1] - P):
        torch.testing.assert_close(logps[:, t], full[:, P + t - 1].gather(-1, ids[:, P + t, None]).squeeze(-1))
    # A left-padded row gives the same log-probs as the same row with no padding at all.
    for r, (prompt, completion) in enumerate(rows):
        alone = torch.tensor([prompt + completion])
        ref, _ = completion_logprobs(model, alone, torch.ones_like(alone), prompt_length=len(prompt))
        torch.testing.assert_close(logps[r, : len(completion)], ref[0], atol=1e-6, rtol=0)
    # Micro-batching changes nothing.
    whole, _ = completion_logprobs(model, ids, mask, prompt_length=P)
    torch.testing.assert_close(whole, logps, atol=0, rtol=0)


@pytest.fixture(scope="module")
def tiny_qwen() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=1,
    )
    return transformers.Qwen2ForCausalLM(config).eval()


def test_tiny_qwen2_padding_micro_batches_entropy_and_grad(tiny_qwen: nn.Module):
    ids, mask, P, rows = _padded_batch()
    ids = torch.cat([ids, ids.flip(0)])  # 4 rows so micro-batch 3 leaves a remainder
    mask = torch.cat([mask, mask.flip(0)])
    rows = rows + rows[::-1]
    with torch.no_grad():
        logps, ent = completion_logprobs(
            tiny_qwen, ids, mask, P, micro_batch_size=3, temperature=0.7, with_entropy=True
        )
        whole, _ = completion_logprobs(tiny_qwen, ids, mask, P, temperature=0.7)
        # Reference: the full forward, sliced by hand.
        logits = tiny_qwen(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits / 0.7
    torch.testing.assert_close(whole, logps, atol=1e-5, rtol=0)
    log_probs = torch.log_softmax(logits[:, P - 1 : -1], -1)
    torch.testing.assert_close(logps, log_probs.gather(-1, ids[:, P:, None]).squeeze(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, -(log_probs.exp() * log_probs).sum(-1), atol=1e-5, rtol=0)
    # Left-padded rows match the same rows run alone without padding (valid completion tokens only).
    with torch.no_grad():
        for r, (prompt, completion) in enumerate(rows):
            alone = torch.tensor([prompt + completion])
            ref, _ = completion_logprobs(tiny_qwen, alone, torch.ones_like(alone), len(prompt), temperature=0.7)
            torch.testing.assert_close(logps[r, : len(completion)], ref[0], atol=1e-5, rtol=0)
    # Gradient reaches the model when not under no_grad.
    tiny_qwen.zero_grad()
    grad_logps, _ = completion_logprobs(tiny_qwen, ids, mask, P, micro_batch_size=2)
    assert grad_logps.requires_grad
    grad_logps[mask[:, P:].bool()].sum().backward()
    assert tiny_qwen.lm_head.weight.grad is not None and tiny_qwen.lm_head.weight.grad.abs().sum() > 0


def test_input_validation_and_empty_completion():
    ids = torch.tensor([[0, 1, 2]])
    mask = torch.ones_like(ids)
    with pytest.raises(ValueError, match="prompt_length"):
        completion_logprobs(CopyLM(), ids, mask, prompt_length=0)
    with pytest.raises(ValueError, match="same"):
        completion_logprobs(CopyLM(), ids, mask[:, :2], prompt_length=1)
    with pytest.raises(ValueError, match="temperature"):
        completion_logprobs(CopyLM(), ids, mask, prompt_length=1, temperature=0.0)
    with pytest.raises(ValueError, match="micro_batch_size"):
        completion_logprobs(CopyLM(), ids, mask, prompt_length=1, micro_batch_size=0)
    logps, ent = completion_logprobs(CopyLM(), ids, mask, prompt_length=3, with_entropy=True)
    assert logps.shape == (1, 0) and ent is not None and ent.shape == (1, 0)


def test_fused_log_softmax_and_entropy_match_the_separate_ones() -> None:
    """One logsumexp per slice gives the same log-probs (and gradient) and entropy as the two passes."""
    from rerec.rl.logprobs import selective_log_softmax_and_entropy

    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 50) * 3).requires_grad_()
    index = torch.randint(0, 50, (3, 5))
    logps, entropy = selective_log_softmax_and_entropy(logits, index)
    (grad,) = torch.autograd.grad(logps.sum(), logits)
    ref = selective_log_softmax(logits, index)
    (ref_grad,) = torch.autograd.grad(ref.sum(), logits)
    full = torch.log_softmax(logits.detach(), -1)
    torch.testing.assert_close(logps, ref)
    torch.testing.assert_close(grad, ref_grad)
    torch.testing.assert_close(entropy, -(full.exp() * full).sum(-1))
    torch.testing.assert_close(entropy, entropy_from_logits(logits.detach()))
    assert not entropy.requires_grad
    one, one_entropy = selective_log_softmax_and_entropy(logits[0, 0], index[0, 0])
    torch.testing.assert_close(one, ref[0, 0])
    torch.testing.assert_close(one_entropy, entropy[0, 0])
