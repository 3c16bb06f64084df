"""What a real ``Trainer.fit`` does to the policy under a given ``precision``, seen from a callback and a
rollout engine named by ``class_path`` in the CLI (so the CLI, Lightning's strategy and its precision
plugin are the real ones). Results land in :data:`SEEN`, read by the tests after the fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback

from rerec.rl.engines import HFGenerateEngine
from rerec.rl.rollout import GenerationConfig, Rollouts

#: Filled during a fit; cleared by the tests before each one.
SEEN: dict[str, Any] = {}


def torch_context() -> dict[str, Any]:
    """The default dtype, the device of a default-device context (``None``: no such context) and
    whether autocast is on, here and now."""
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._device import DeviceContext

    devices = [str(m.device) for m in _get_current_function_mode_stack() if isinstance(m, DeviceContext)]
    return {
        "dtype": str(torch.get_default_dtype()),
        "device": devices[-1] if devices else None,
        "autocast": any(torch.is_autocast_enabled(t) for t in ("cpu", "cuda")),
    }


class LoraStepRecorder(Callback):
    """Records, at the second optimizer step (the first moves only LoRA-B: A's gradient is zero while B
    is), the dtypes of the trainable parameters and of AdamW's states, and the share of LoRA-A entries
    that step changed."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            SEEN["lora_a_before"] = {n: p.detach().clone() for n, p in pl_module.policy.named_parameters()
                                     if "lora_A" in n}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != 2:
            return
        before = SEEN.pop("lora_a_before")
        params = dict(pl_module.policy.named_parameters())
        moved = sum(int((params[n].detach() != b).sum()) for n, b in before.items())
        SEEN["lora_a_moved"] = moved / sum(b.numel() for b in before.values())
        SEEN["trainable_dtypes"] = {str(p.dtype) for p in params.values() if p.requires_grad}
        state = trainer.optimizers[0].state
        SEEN["adam_state_dtypes"] = {str(v.dtype) for s in state.values() for k, v in s.items()
                                     if k in ("exp_avg", "exp_avg_sq")}


class ContextRecordingEngine(HFGenerateEngine):
    """Hugging Face generation that records the torch context it is set up and called in. It runs its
    own model in spirit (``neutral_context`` as vLLM's engine), so the policy module must call it in a
    neutral context."""

    neutral_context = True

    def setup(self, policy: torch.nn.Module, tokenizer: Any) -> None:
        SEEN.setdefault("setup", []).append(torch_context())
        super().setup(policy, tokenizer)

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 num_generations: int | None = None, greedy: bool = False) -> Rollouts:
        SEEN.setdefault("generate", []).append(torch_context())
        return super().generate(prompt_ids, config, num_generations, greedy)

    def sleep(self) -> None:
        SEEN.setdefault("sleep", []).append(torch_context())


class LayoutRecorder(Callback):
    """Records how the update computes log-probs (``CompletionLogProbs``'s unit and packing)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        SEEN["logprobs"] = (pl_module.logprobs.unit, pl_module.logprobs.packed)


class TrainerLogProbsEngine(HFGenerateEngine):
    """Reports as its sampling log-probs the trainer's own, dropout off: an engine that agrees with the
    trainer exactly, so every importance weight must be 1."""

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 num_generations: int | None = None, greedy: bool = False) -> Rollouts:
        from dataclasses import replace

        from rerec.rl.update import CompletionLogProbs

        ro = super().generate(prompt_ids, config, num_generations, greedy)
        was_training = self.policy.training
        self.policy.eval()
        try:
            logps = CompletionLogProbs(1, 64, config.temperature).all(self.policy, ro)
        finally:
            self.policy.train(was_training)
        return replace(ro, logprobs=logps)
