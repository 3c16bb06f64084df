"""A user's own reward component, rollout engines and callbacks, outside the ``rerec`` package: what
``class_path`` in a config can name (the last two also inject faults for the reliability drills)."""

from __future__ import annotations

import os
import signal as signal_module
from collections.abc import Sequence

import torch
from lightning.pytorch import Callback

from rerec.rl.engines import HFGenerateEngine
from rerec.rl.reward_components import AnswerBatch, RewardComponent
from rerec.rl.rollout import GenerationConfig, Rollouts


class AnswerLengthPenalty(RewardComponent):
    """``-per_char`` × the completion's length in characters."""

    name = "answer_length"

    def __init__(self, weight: float = 1.0, per_char: float = 0.001) -> None:
        super().__init__(weight)
        self.per_char = per_char

    def __call__(self, batch: AnswerBatch) -> torch.Tensor:
        return batch.values([-self.per_char * len(t) for t in batch.texts])


class SomeQueriesLength(AnswerLengthPenalty):
    """:class:`AnswerLengthPenalty` for the queries whose id hashes to an even number, 0 for the others:
    about half of the groups have rewards that vary (dynamic sampling's informative groups)."""

    name = "some_queries_length"

    def __call__(self, batch: AnswerBatch) -> torch.Tensor:
        import zlib

        return batch.values([-self.per_char * len(t) if zlib.crc32(task.query_id.encode()) % 2 == 0 else 0.0
                             for t, task in zip(batch.texts, batch.tasks)])


class CountingEngine(HFGenerateEngine):
    """HF generation that counts its calls and syncs (a stand-in for an engine with its own weights)."""

    def __init__(self, label: str = "counting") -> None:
        self.label = label
        self.generate_calls: list[tuple[int, int, bool]] = []
        self.syncs = 0

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 num_generations: int | None = None, greedy: bool = False) -> Rollouts:
        out = super().generate(prompt_ids, config, num_generations, greedy)
        self.generate_calls.append((len(prompt_ids), len(out.texts), greedy))
        return out

    def sync(self, policy: torch.nn.Module) -> None:
        assert policy is self.policy
        self.syncs += 1


class RaggedEngine(CountingEngine):
    """Cuts row ``i``'s completion to ``1 + 2·(i mod 3)`` tokens (an EOS-like end), so that a batch
    always holds completions of different lengths, whatever the model generates."""

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 num_generations: int | None = None, greedy: bool = False) -> Rollouts:
        out = super().generate(prompt_ids, config, num_generations, greedy)
        keep = torch.tensor([1 + 2 * (i % 3) for i in range(len(out.texts))], device=out.completion_ids.device)
        mask = out.completion_mask & (torch.arange(out.completion_ids.shape[1], device=keep.device)[None] < keep[:, None])
        ids = out.completion_ids.masked_fill(~mask, self.tokenizer.pad_token_id)
        p = out.prompt_length
        return Rollouts(
            input_ids=torch.cat([out.input_ids[:, :p], ids], dim=1),
            attention_mask=torch.cat([out.attention_mask[:, :p], mask.long()], dim=1),
            prompt_length=p, completion_ids=ids, completion_mask=mask, truncated=out.truncated,
            texts=self.tokenizer.batch_decode(ids, skip_special_tokens=True),
        )


class PoisonedLogProbs(HFGenerateEngine):
    """Generates normally, then makes the policy's logits NaN until the next generation, in the RL steps
    ``steps`` (1-based; counted by training rollouts, so run with ``eval_samples: 0``): every training
    log-prob of those steps is NaN, as with a numerically unstable model."""

    def __init__(self, steps: list[int] | None = None) -> None:
        self.steps = set(steps if steps is not None else [2])
        self.rollout_calls = 0
        self.poisoned = False

    def setup(self, policy: torch.nn.Module, tokenizer) -> None:
        super().setup(policy, tokenizer)
        policy.register_forward_hook(self._poison)

    def _poison(self, module: torch.nn.Module, args, output):
        if self.poisoned:
            output.logits = output.logits * float("nan")
        return output

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 num_generations: int | None = None, greedy: bool = False) -> Rollouts:
        self.poisoned = False
        out = super().generate(prompt_ids, config, num_generations, greedy)
        if not greedy:
            self.rollout_calls += 1
            self.poisoned = self.rollout_calls in self.steps
        return out


class SignalAt(Callback):
    """Sends ``signal`` (a name: ``SIGTERM``, ``SIGINT``, ``SIGKILL``) to this process ``times`` times in a
    row when RL step ``step`` (1-based) starts, as an operator or a scheduler would."""

    def __init__(self, step: int, signal: str = "SIGTERM", times: int = 1) -> None:
        self.step, self.signal, self.times = step, signal, times

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if pl_module.stats.rl_steps + 1 == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), getattr(signal_module, self.signal))


class MismatchedEngine(HFGenerateEngine):
    """Generates normally and reports sampling log-probs that differ from the trainer's as a second
    implementation's would: the policy's own log-probs minus ``shift`` on every other completion token
    (so those tokens' importance ratio is ``e^shift``)."""

    def __init__(self, shift: float = 1.0) -> None:
        self.shift = shift

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 num_generations: int | None = None, greedy: bool = False) -> Rollouts:
        from rerec.rl.logprobs import completion_logprobs

        out = super().generate(prompt_ids, config, num_generations, greedy)
        with torch.no_grad():
            logps, _ = completion_logprobs(self.policy, out.input_ids, out.attention_mask, out.prompt_length,
                                           temperature=config.temperature)
        every_other = (torch.arange(logps.shape[1], device=logps.device) % 2 == 0).float()
        out.logprobs = logps - self.shift * every_other
        return out
