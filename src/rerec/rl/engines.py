"""Rollout engines: what turns prompts into completions for training, evaluation and prediction.

The policy module calls ``engine.generate`` for every batch of rollouts and every evaluation, and
``engine.sync(policy)`` after every optimizer step, so an engine that keeps its own copy of the weights
(a vLLM engine, a server) can refresh it. Chosen in YAML like the advantage estimators:

.. code-block:: yaml

    engine:
      class_path: rerec.rl.engines.HFGenerateEngine   # the default
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from rerec.rl.rollout import GenerationConfig, Rollouts, generate
from rerec.rl.torch_context import neutral_context

__all__ = ["HFGenerateEngine", "RolloutEngine", "engine_context"]


class RolloutEngine(ABC):
    """Generates rollouts from the policy being trained.

    Contract of :meth:`generate`: rows are grouped per prompt (rows ``b·n … b·n+n−1`` answer prompt
    ``b``); prompts are left-padded and completions start at the same column (``Rollouts``); with
    ``greedy`` the decoding is deterministic. An engine may fill ``Rollouts.logprobs`` with its own
    sampling log-probs; the trainer recomputes the log-probs it optimises either way.

    An engine that runs its own model (vLLM, a server) sets ``neutral_context = True``: the policy module
    then sets it up and calls it outside Lightning's default device, default dtype and autocast
    (:func:`~rerec.rl.torch_context.neutral_context`), as in a plain script. An engine that runs the
    policy itself keeps them (they are the run's precision).
    """

    #: Set up and call this engine in :func:`~rerec.rl.torch_context.neutral_context`.
    neutral_context: bool = False
    #: The engine schedules any number of prompts itself (vLLM): the held-out evaluation gives it all
    #: its queries in one call instead of chunks of ``eval_batch_size`` generated rows.
    batches_itself: bool = False

    def setup(self, policy: torch.nn.Module, tokenizer: Any) -> None:
        """Called once, when the policy and its tokenizer are built (before any generation)."""
        self.policy = policy
        self.tokenizer = tokenizer

    @abstractmethod
    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        config: GenerationConfig,
        num_generations: int | None = None,
        greedy: bool = False,
    ) -> Rollouts:
        """``num_generations`` completions per prompt (default: ``config.num_generations``, or 1 with
        ``greedy``), sampled with ``config``'s temperature, top-p, top-k and length budget."""

    def sync(self, policy: torch.nn.Module) -> None:
        """Called after every optimizer step: make the next generation use ``policy``'s current weights."""

    def sleep(self) -> None:
        """Called before every policy update: an engine that holds accelerator memory of its own may
        release it until its next :meth:`generate`."""


class HFGenerateEngine(RolloutEngine):
    """Hugging Face ``generate`` on the policy itself: one batched call per rollout batch, KV cache, each
    prompt's prefill shared by its G samples. Generates from the live weights, so :meth:`sync` has
    nothing to do."""

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 num_generations: int | None = None, greedy: bool = False) -> Rollouts:
        return generate(self.policy, self.tokenizer, prompt_ids, config, num_generations, greedy)


def engine_context(engine: RolloutEngine) -> AbstractContextManager[None]:
    """The context ``engine`` is set up and called in: neutral when it runs its own model."""
    return neutral_context() if getattr(engine, "neutral_context", False) else nullcontext()
