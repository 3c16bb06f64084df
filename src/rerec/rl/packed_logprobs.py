"""Completion log-probs with each group's prompt computed once, compatible with gradient checkpointing.

The shared-prompt path of :func:`~rerec.rl.logprobs.grouped_completion_logprobs` runs the prompt with the
KV cache on and the completions on top of the cache; gradient checkpointing cannot replay that (Hugging
Face turns the cache off in checkpointed layers: a replayed layer would write its keys into the cache a
second time), so with checkpointing every row used to run its whole prompt again: 80·(P+T) tokens per
pass instead of 16·P + 80·T at the recipe's B = 16, G = 5.

Here a group is one *packed* sequence, ``[prompt | completion 1 | … | completion G]``, with a 4-D
attention mask (each completion sees the prompt's real tokens and its own earlier tokens, nothing of the
other completions) and the position ids each token has in its own row. No cache is involved, so every
layer can be checkpointed as usual, and each token's hidden state is the one of the unpacked row: the
log-probs and their gradients equal :func:`~rerec.rl.logprobs.completion_logprobs`' (tested). Attention
costs ``(P + G·T)²`` per group instead of ``G·(P+T)²``, a few percent of a 3B model's FLOPs at these
lengths; the linear layers, most of the cost, see ``P + G·T`` tokens instead of ``G·(P+T)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rerec.rl.logprobs import (
    _head_scores, _tempered_scores, decoder_and_head, group_prompts, position_ids_from_mask,
)

__all__ = ["packed_completion_logprobs", "supports_packed_groups"]

#: Attention implementations that take a custom 4-D mask, and the mask dtype each expects.
_MASK_KINDS = {"sdpa": "bool", "eager": "float"}


def _attn_implementation(model: nn.Module) -> str | None:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    return getattr(config, "_attn_implementation", None)


def supports_packed_groups(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face causal LM whose attention takes a custom 4-D mask (``sdpa``,
    ``eager``; not flash attention) and that exposes its decoder and LM head."""
    return _attn_implementation(model) in _MASK_KINDS and decoder_and_head(model) is not None


def packed_attention_mask(prompt_mask: Tensor, completion_mask: Tensor) -> Tensor:
    """``(groups, 1, L, L)`` bool, True where a query may attend a key, for ``L = P + G·T``.

    Prompt tokens attend the earlier real prompt tokens; completion ``j``'s tokens attend every real prompt
    token and the earlier real tokens of completion ``j``; no query attends padding but itself (a
    left-padding column would otherwise see nothing, and a fully masked row gives NaN). Outputs at padding
    are never read.

    Args:
        prompt_mask: ``(groups, P)`` True on real (left-padded) prompt tokens.
        completion_mask: ``(groups, G, T)`` True on real (right-padded) completion tokens.
    """
    groups, P = prompt_mask.shape
    _, G, T = completion_mask.shape
    L = P + G * T
    device = prompt_mask.device
    # segment of each column: 0 = prompt, j + 1 = completion j
    segment = torch.cat([torch.zeros(P, dtype=torch.long, device=device),
                         torch.arange(1, G + 1, device=device).repeat_interleave(T)])
    col = torch.arange(L, device=device)
    causal = col.unsqueeze(1) >= col.unsqueeze(0)  # (q, k): key not after the query
    same = segment.unsqueeze(1) == segment.unsqueeze(0)
    key_in_prompt = (segment == 0).unsqueeze(0).expand(L, L)
    allowed = (key_in_prompt & causal) | (key_in_prompt & (segment != 0).unsqueeze(1)) | (same & causal)
    real = torch.cat([prompt_mask.bool(), completion_mask.bool().reshape(groups, G * T)], dim=1)  # (groups, L)
    mask = allowed.unsqueeze(0) & real.unsqueeze(1)  # real keys only
    mask = mask | torch.eye(L, dtype=torch.bool, device=device).unsqueeze(0)  # padding queries: themselves
    return mask.unsqueeze(1)


def packed_completion_logprobs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_length: int,
    group_size: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    logits_chunk: int | None = None,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Same result as :func:`~rerec.rl.logprobs.completion_logprobs`, with each group packed into one
    sequence (see the module docstring); arguments as
    :func:`~rerec.rl.logprobs.grouped_completion_logprobs`'. Needs :func:`supports_packed_groups`."""
    n_rows, length = input_ids.shape
    G, P = group_size, prompt_length
    prompt_ids, prompt_mask = group_prompts(input_ids, attention_mask, P, G, "packed_completion_logprobs")
    prompt_mask = prompt_mask.bool()
    kind = _MASK_KINDS.get(_attn_implementation(model) or "")
    split = decoder_and_head(model)
    if kind is None or split is None:
        raise ValueError("packed_completion_logprobs: the model needs sdpa or eager attention, a decoder and an LM head")
    decoder, head = split
    groups, T = n_rows // G, length - P
    completion = input_ids[:, P:]
    completion_mask = attention_mask[:, P:].bool().reshape(groups, G, T)
    position_ids = position_ids_from_mask(attention_mask)  # each token's position in its own row
    packed_ids = torch.cat([prompt_ids, completion.reshape(groups, G * T)], dim=1)
    packed_positions = torch.cat([position_ids[::G, :P], position_ids[:, P:].reshape(groups, G * T)], dim=1)
    mask = packed_attention_mask(prompt_mask, completion_mask)
    if kind == "float":  # eager attention adds the mask to the scores
        mask = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill_(
            ~mask, torch.finfo(torch.float32).min)
    hidden = decoder(input_ids=packed_ids, attention_mask=mask, position_ids=packed_positions,
                     use_cache=False).last_hidden_state
    # token 0 of every completion is predicted at the prompt's last column (shared); token t >= 1 of
    # completion j at column t - 1 of its block
    first = head(hidden[:, P - 1 : P]).repeat_interleave(G, 0)
    rest = hidden[:, P:].reshape(groups, G, T, -1)[:, :, :-1].reshape(n_rows, T - 1, -1)
    parts = [_tempered_scores(first, completion[:, :1], temperature, with_entropy, entropy_grad)]
    step = logits_chunk or max(T - 1, 1)
    for start in range(0, T - 1, step):
        cols = slice(start, start + step)
        labels = completion[:, 1:][:, cols]
        if logits_chunk:  # the chunk's logits are rebuilt in the backward instead of kept
            parts.append(checkpoint(_head_scores, head, rest[:, cols], labels, temperature, with_entropy,
                                    entropy_grad, use_reentrant=False))
        else:
            parts.append(_head_scores(head, rest[:, cols], labels, temperature, with_entropy, entropy_grad))
    logps = torch.cat([p[0] for p in parts], dim=1)
    entropy = torch.cat([p[1] for p in parts], dim=1) if with_entropy else None
    return logps, entropy
