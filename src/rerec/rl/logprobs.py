"""Per-token log-probabilities (and entropy) of completions under a causal LM, micro-batched.

Tensor layout (see ``docs/architecture.md``): each of the N rows is a left-padded prompt followed by a
right-padded completion that starts at column ``P`` for every row. The log-prob of completion token ``t``
(input column ``P+t``) comes from the logits at input column ``P+t-1``.

Memory: the full-vocabulary tensors are only ever built for one micro-batch and only for the completion
columns (``(mb, T, V)``), never ``(N, P+T, V)``; on Hugging Face models ``logits_to_keep`` additionally
skips the LM head on prompt columns.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "accepts_kwarg", "completion_logprobs", "entropy_from_logits", "position_ids_from_mask",
    "selective_log_softmax", "selective_log_softmax_and_entropy",
]


def selective_log_softmax(logits: Tensor, index: Tensor) -> Tensor:
    """``log_softmax(logits, -1)`` gathered at ``index``, without building the full log-softmax tensor.

    Computes ``logits[..., index] - logsumexp(logits, -1)`` in float32, one leading-dim slice at a time so
    the float32 temporaries of ``logsumexp`` stay at one slice's size.

    Args:
        logits: ``(..., V)`` unnormalised scores (any float dtype).
        index: ``(...)`` integer token ids in ``[0, V)``; same leading shape as ``logits``.

    Returns:
        ``(...)`` float32 log-probabilities of the indexed tokens (differentiable w.r.t. ``logits``).
    """
    if logits.shape[:-1] != index.shape:
        raise ValueError(f"selective_log_softmax: logits {tuple(logits.shape)} vs index {tuple(index.shape)}")
    picked = torch.gather(logits, -1, index.long().unsqueeze(-1)).squeeze(-1).float()
    if logits.dim() == 1:
        return picked - torch.logsumexp(logits.float(), dim=-1)
    lse = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in logits])
    return picked - lse


@torch.no_grad()
def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy ``H = logsumexp(z) - sum_v softmax(z)_v z_v`` of the categorical given by ``logits``.

    Computed without gradient (it is a logged metric), in float32, one leading-dim slice at a time.

    Args:
        logits: ``(..., V)`` unnormalised scores.

    Returns:
        ``(...)`` float32 entropy in nats.
    """

    if logits.dim() == 1:
        return _entropy_given_lse(logits.float(), torch.logsumexp(logits.float(), dim=-1))
    return torch.stack([_entropy_given_lse(row.float(), torch.logsumexp(row.float(), dim=-1)) for row in logits])


@torch.no_grad()
def _entropy_given_lse(z: Tensor, lse: Tensor) -> Tensor:
    """Entropy of ``softmax(z)`` when ``logsumexp(z)`` is known: one ``z``-sized temporary, used in place
    (the softmax, then its product with ``z``), instead of three."""
    p = (z - lse.unsqueeze(-1)).exp_()
    return lse - p.mul_(z).sum(-1)


def selective_log_softmax_and_entropy(logits: Tensor, index: Tensor,
                                      entropy_grad: bool = False) -> tuple[Tensor, Tensor]:
    """``(selective_log_softmax(logits, index), entropy_from_logits(logits))`` with one ``logsumexp``
    per slice instead of two: at a 152k vocabulary the full-vocabulary passes are most of the update's
    time outside the model. The entropy carries no gradient unless ``entropy_grad`` (an entropy bonus in
    the loss; it keeps each slice's softmax for the backward)."""
    if logits.shape[:-1] != index.shape:
        raise ValueError(f"selective_log_softmax: logits {tuple(logits.shape)} vs index {tuple(index.shape)}")
    picked = torch.gather(logits, -1, index.long().unsqueeze(-1)).squeeze(-1).float()
    rows = logits.unsqueeze(0) if logits.dim() == 1 else logits
    lses, entropies = [], []
    for row in rows:
        z = row.float()
        lse = torch.logsumexp(z, dim=-1)
        lses.append(lse)
        if entropy_grad:
            entropies.append(lse - (torch.softmax(z, dim=-1) * z).sum(-1))
        else:
            entropies.append(_entropy_given_lse(z.detach(), lse.detach()))
    lse, entropy = torch.stack(lses), torch.stack(entropies)
    if logits.dim() == 1:
        lse, entropy = lse[0], entropy[0]
    return picked - lse, entropy


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids that ignore left padding: ``cumsum(mask) - 1`` clamped at 0.

    The first real token of every row gets position 0, so a left-padded row sees the same rotary /
    absolute positions as the same row without padding.

    Args:
        attention_mask: ``(N, L)`` 1/True on real tokens.

    Returns:
        ``(N, L)`` int64 position ids.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def accepts_kwarg(model: nn.Module, name: str) -> bool:
    """Whether ``model``'s forward (seen through a peft wrapper) takes the keyword ``name``."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def completion_logprobs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_length: int,
    micro_batch_size: int | None = None,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of the completion tokens ``input_ids[:, P:]`` under ``model``, micro-batch by micro-batch.

    Gradient flows to ``model`` unless the caller wraps the call in ``torch.no_grad()`` (old / reference
    log-probs). Values at completion padding positions are computed but meaningless: mask them.

    Args:
        model: causal LM; called as ``model(input_ids=, attention_mask=, position_ids=, ...)`` and must
            return logits ``(n, L', V)`` for the last ``L'`` input columns, either as a tensor or as an
            object with ``.logits`` (Hugging Face / peft models). ``logits_to_keep`` and ``use_cache`` are
            passed when its forward accepts them.
        input_ids: ``(N, P+T)`` token ids, left-padded prompt then right-padded completion.
        attention_mask: ``(N, P+T)`` 1/True on real tokens; position ids are derived from it so left
            padding does not shift positions.
        prompt_length: ``P``, the column where every completion starts (``1 <= P <= P+T``).
        micro_batch_size: rows per forward pass; ``None`` means all ``N`` rows at once.
        temperature: the sampling temperature; logits are divided by it before the softmax so the
            log-probs are those of the distribution the completions were sampled from.
        with_entropy: also return the per-token entropy of the (temperature-scaled) distribution.
        entropy_grad: let gradient flow through that entropy (an entropy bonus in the loss).

    Returns:
        ``(logps, entropy)``: ``(N, T)`` float32 log-probs and ``(N, T)`` float32 entropy, without gradient
        unless ``entropy_grad`` (``None`` unless ``with_entropy``).
    """
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"completion_logprobs: input_ids {tuple(input_ids.shape)} and attention_mask "
            f"{tuple(attention_mask.shape)} must be the same (N, P+T) shape"
        )
    n_rows, length = input_ids.shape
    if not 1 <= prompt_length <= length:
        raise ValueError(f"completion_logprobs: prompt_length={prompt_length} outside [1, {length}]")
    if micro_batch_size is not None and micro_batch_size < 1:
        raise ValueError(f"completion_logprobs: micro_batch_size={micro_batch_size} must be >= 1 or None")
    if not temperature > 0:
        raise ValueError(f"completion_logprobs: temperature={temperature} must be > 0")

    n_completion = length - prompt_length
    if n_completion == 0 or n_rows == 0:
        empty = input_ids.new_zeros((n_rows, n_completion), dtype=torch.float32)
        return empty, (empty.clone() if with_entropy else None)

    position_ids = position_ids_from_mask(attention_mask)
    labels = input_ids[:, prompt_length:]
    extra: dict[str, Any] = {}
    # Only the logits at columns P-1 .. P+T-2 are needed: the last T+1 columns minus the final one.
    if accepts_kwarg(model, "logits_to_keep"):
        extra["logits_to_keep"] = n_completion + 1
    if accepts_kwarg(model, "use_cache"):
        extra["use_cache"] = False

    step = micro_batch_size or n_rows
    logps_parts: list[Tensor] = []
    entropy_parts: list[Tensor] = []
    for start in range(0, n_rows, step):
        rows = slice(start, start + step)
        out = model(
            input_ids=input_ids[rows],
            attention_mask=attention_mask[rows],
            position_ids=position_ids[rows],
            **extra,
        )
        logits = out if isinstance(out, Tensor) else out.logits
        if logits.shape[1] < n_completion + 1:
            raise ValueError(
                f"completion_logprobs: model returned logits for {logits.shape[1]} columns, "
                f"need at least {n_completion + 1}"
            )
        # Works whether or not the model honoured logits_to_keep: count from the right end.
        logits = logits[:, -(n_completion + 1) : -1, :]
        if temperature != 1.0:
            logits = logits.float() / temperature
        if with_entropy:
            logps, entropy = selective_log_softmax_and_entropy(logits, labels[rows], entropy_grad)
            logps_parts.append(logps)
            entropy_parts.append(entropy)
        else:
            logps_parts.append(selective_log_softmax(logits, labels[rows]))
        del out, logits
    logps = torch.cat(logps_parts, dim=0)
    entropy = torch.cat(entropy_parts, dim=0) if with_entropy else None
    return logps, entropy


def group_prompts(input_ids: Tensor, attention_mask: Tensor, prompt_length: int, group_size: int,
                  caller: str) -> tuple[Tensor, Tensor]:
    """Each group's prompt block, ``(ids, mask)`` of shape ``(N / G, P)``, after checking that the rows
    are whole groups of ``group_size`` sharing their prompt and that ``prompt_length`` leaves a
    completion (errors name ``caller``)."""
    n_rows, length = input_ids.shape
    if group_size < 1 or n_rows % group_size:
        raise ValueError(f"{caller}: {n_rows} rows are not groups of {group_size}")
    if not 1 <= prompt_length < length:
        raise ValueError(f"{caller}: prompt_length={prompt_length} outside [1, {length})")
    prompt_ids = input_ids[::group_size, :prompt_length]
    if not torch.equal(input_ids[:, :prompt_length], prompt_ids.repeat_interleave(group_size, 0)):
        raise ValueError(f"{caller}: rows of a group do not share their prompt")
    return prompt_ids, attention_mask[::group_size, :prompt_length]


def grouped_completion_logprobs(
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
    """Same result as :func:`completion_logprobs`, computing each shared prompt once per group.

    The ``G`` rows of a group (contiguous, see the conventions) hold the same prompt. The prompt block is
    run once per group with the KV cache on, the cache is repeated ``G`` times (differentiably) and the
    completion block is run on top of it. The prompt's forward and backward cost drops by a factor ``G``;
    gradients flow through the repeated cache into the prompt computation, so the result and its
    gradient equal the ungrouped ones (tested). Needs a Hugging Face causal LM that returns
    ``past_key_values``.

    Args:
        model: Hugging Face causal LM (or a peft wrapper of one).
        input_ids: ``(N, P+T)`` as in :func:`completion_logprobs`, with ``N`` a multiple of ``group_size``.
        attention_mask: ``(N, P+T)``.
        prompt_length: ``P``.
        group_size: ``G``; rows ``g·G … g·G+G−1`` must share their prompt block.
        temperature: sampling temperature (logits are divided by it).
        with_entropy: also return the per-token entropy (no gradient unless ``entropy_grad``).
        logits_chunk: apply the LM head to this many completion columns at a time, recomputing each
            chunk's logits in the backward instead of keeping them: peak memory holds ``(n, chunk, V)``
            logits instead of ``(n, T, V)`` and their gradient, for one more LM-head pass. ``None``: all
            columns at once. Needs a model with ``get_decoder()`` and ``get_output_embeddings()``
            (Hugging Face causal LMs); others take the unchunked path.
    """
    prompt_ids, prompt_mask = group_prompts(input_ids, attention_mask, prompt_length, group_size,
                                            "grouped_completion_logprobs")
    position_ids = position_ids_from_mask(attention_mask)
    out = model(
        input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids[::group_size, :prompt_length],
        use_cache=True, logits_to_keep=1,
    )
    cache = out.past_key_values
    cache.batch_repeat_interleave(group_size)
    first = out.logits[:, -1:, :].repeat_interleave(group_size, 0)  # predicts completion token 0
    completion = input_ids[:, prompt_length:]
    split = decoder_and_head(model) if logits_chunk else None
    if split is not None:
        decoder, head = split
        hidden = decoder(
            input_ids=completion[:, :-1], attention_mask=attention_mask[:, :-1],
            position_ids=position_ids[:, prompt_length:-1], past_key_values=cache, use_cache=True,
        ).last_hidden_state
        parts = [_tempered_scores(first, completion[:, :1], temperature, with_entropy, entropy_grad)]
        for start in range(0, hidden.shape[1], logits_chunk):
            cols = slice(start, start + logits_chunk)
            parts.append(checkpoint(_head_scores, head, hidden[:, cols], completion[:, 1:][:, cols], temperature,
                                    with_entropy, entropy_grad, use_reentrant=False))
        logps = torch.cat([p[0] for p in parts], dim=1)
        entropy = torch.cat([p[1] for p in parts], dim=1) if with_entropy else None
        return logps, entropy
    rest = model(
        input_ids=completion[:, :-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=position_ids[:, prompt_length:-1],
        past_key_values=cache,
        use_cache=True,
    ).logits
    # The two logit blocks are scored apart and only their (n, T) results joined: concatenating the
    # logits would copy the whole (n, T, V) tensor (and its gradient) once more.
    parts = [_tempered_scores(block, completion[:, cols], temperature, with_entropy, entropy_grad)
             for block, cols in ((first, slice(0, 1)), (rest, slice(1, None))) if block.shape[1]]
    logps = torch.cat([p[0] for p in parts], dim=1)
    entropy = torch.cat([p[1] for p in parts], dim=1) if with_entropy else None
    return logps, entropy


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The decoder stack (returning final-normed hidden states) and the LM head of a Hugging Face causal
    LM, seen through a peft wrapper (whose adapters live inside those modules); ``None`` if it has none."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder, get_head = getattr(inner, "get_decoder", None), getattr(inner, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    decoder, head = get_decoder(), get_head()
    return (decoder, head) if decoder is not None and head is not None else None


def _head_scores(head: nn.Module, hidden: Tensor, labels: Tensor, temperature: float, with_entropy: bool,
                 entropy_grad: bool = False):
    """Log-probs (and entropy) of one chunk of hidden states through the LM head; run under
    ``checkpoint`` so its logits are freed after the forward and rebuilt in the backward."""
    return _tempered_scores(head(hidden), labels, temperature, with_entropy, entropy_grad)


def _tempered_scores(logits: Tensor, labels: Tensor, temperature: float, with_entropy: bool,
                     entropy_grad: bool = False):
    """``(log-probs of labels, entropy or None)`` of one block of logits at ``temperature``."""
    if temperature != 1.0:
        logits = logits.float() / temperature
    if with_entropy:
        return selective_log_softmax_and_entropy(logits, labels, entropy_grad)
    return selective_log_softmax(logits, labels), None
