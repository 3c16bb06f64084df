"""One batched generation of ``B × G`` completions (left-padded prompts, KV cache, sampling)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rerec.rl.logprobs import accepts_kwarg, position_ids_from_mask


@dataclass
class GenerationConfig:
    """Sampling of rollouts.

    Args:
        num_generations: G, completions sampled per prompt (the group of GRPO).
        temperature: Sampling temperature; log-probs are computed at the same temperature.
        top_p: Nucleus sampling mass (1.0 = off).
        top_k: Top-k sampling (0 = off).
        max_completion_length: Most tokens generated per completion; longer ones are cut (and counted in
            ``completions/clipped_ratio``).
        share_prompt_prefill: Compute each prompt's KV cache once and share it between its G samples
            (same result, G× less prefill work).
    """

    num_generations: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_completion_length: int = 256
    share_prompt_prefill: bool = True


@dataclass
class Rollouts:
    """Token tensors of a rollout batch (conventions of ``docs/architecture.md``).

    Attributes:
        input_ids: (N, P+T) left-padded prompts followed by right-padded completions.
        attention_mask: (N, P+T) 1 on real prompt and completion tokens.
        prompt_length: P, the column where every completion starts.
        completion_ids: (N, T) generated tokens, pad after the end.
        completion_mask: (N, T) True up to and including the EOS token.
        truncated: (N,) True where no EOS came within ``max_completion_length``.
        texts: Decoded completions without special tokens.
        logprobs: (N, T) log-probs of the completion tokens under the sampling distribution as the
            engine computed them, 0 on padding; ``None`` when the engine reports none (HF ``generate``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_length: int
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]
    logprobs: torch.Tensor | None = None

    @property
    def num_completion_tokens(self) -> int:
        return int(self.completion_mask.sum())


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"):
    """(ids, mask) of ``sequences`` left-padded to the longest one."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def completion_mask_from_ids(completion_ids: torch.Tensor, eos_token_id: int | Sequence[int]):
    """(mask, truncated): mask is True up to and including the first EOS of each row."""
    eos_ids = torch.as_tensor(
        [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=completion_ids.device
    )
    is_eos = torch.isin(completion_ids, eos_ids)
    has_eos = is_eos.any(dim=1)
    first = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, completion_ids.shape[1], dtype=torch.long))
    positions = torch.arange(completion_ids.shape[1], device=completion_ids.device).unsqueeze(0)
    return positions <= first.unsqueeze(1), ~has_eos


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[Sequence[int]],
    config: GenerationConfig,
    num_generations: int | None = None,
    greedy: bool = False,
) -> Rollouts:
    """Sample ``num_generations`` completions for every prompt in ONE ``generate`` call.

    Rows are grouped per prompt (rows ``b·G … b·G+G−1`` belong to prompt ``b``). ``greedy`` decodes
    deterministically (evaluation); the model is put in eval mode for the call and restored after.
    """
    g = num_generations or (1 if greedy else config.num_generations)
    device = next(model.parameters()).device
    ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id, device)
    was_training = model.training
    model.eval()
    cache = None
    if g > 1 and config.share_prompt_prefill and ids.shape[1] > 1:
        # Prefill each prompt once (all but its last token) and repeat the KV cache G times; generate
        # then continues from the cache, so the prompt is not recomputed for every sample of the group.
        # Only the cache is kept: ask for one column of logits, not (B, P, V) (with a 152k vocabulary and
        # 560-token prompts that tensor is ~340 MB a prompt in float32).
        keep = {"logits_to_keep": 1} if accepts_kwarg(model, "logits_to_keep") else {}
        cache = model(
            input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
            position_ids=position_ids_from_mask(mask[:, :-1]), use_cache=True, **keep,
        ).past_key_values
        cache.batch_repeat_interleave(g)
    ids, mask = ids.repeat_interleave(g, dim=0), mask.repeat_interleave(g, dim=0)
    sampling = {} if greedy else {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k or None,
    }
    try:
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=config.max_completion_length,
            do_sample=not greedy,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
            past_key_values=cache,
            **sampling,
        )
    finally:
        model.train(was_training)
    prompt_length = ids.shape[1]
    completion_ids = out[:, prompt_length:]
    completion_mask, truncated = completion_mask_from_ids(completion_ids, tokenizer.eos_token_id)
    completion_ids = completion_ids.masked_fill(~completion_mask, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    full_mask = torch.cat([mask, completion_mask.long()], dim=1)
    return Rollouts(
        input_ids=torch.cat([ids, completion_ids], dim=1),
        attention_mask=full_mask,
        prompt_length=prompt_length,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        truncated=truncated,
        texts=texts,
    )
