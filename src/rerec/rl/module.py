"""``ReRecPolicy``: the LightningModule that owns the policy, its rollouts and the clipped policy update.

One training step = one rollout batch: generate ``B·G`` completions with the rollout engine, score them
with the reward components, compute advantages, update the policy (``num_iterations`` passes of
mini-batch optimizer steps), log. The jobs around it live in their own files: building the policy
(:mod:`~rerec.rl.policy_builder`), the update (:mod:`~rerec.rl.update`), evaluation
(:mod:`~rerec.rl.evaluation`) and run bookkeeping (:mod:`~rerec.rl.run_stats`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import lazy_instance

from rerec.atomic import atomic_write_json
from rerec.data.contract import RecData
from rerec.data.curriculum_callback import GROUP_STATS_KEY, GroupStats
from rerec.data.tasks import RecTask
from rerec.eval.report import EvalRecord, write_predictions_jsonl, write_report
from rerec.graph.scorer_setup import GraphRewardConfig, build_graph_scorer
from rerec.rl.advantages import AdvantageEstimator, AdvantageInputs, GRPOAdvantage
from rerec.rl.checkpointing import check_finite_checkpoint, check_policy_state, drop_frozen_policy_state
from rerec.rl.completion_rows import completion_rows
from rerec.rl.distributed import gather_objects, reduce_metrics, unique_by
from rerec.rl.dynamic_sampling import DynamicSampler, DynamicSamplingConfig
from rerec.rl.engines import HFGenerateEngine, RolloutEngine, engine_context
from rerec.rl.evaluation import Evaluator, accuracy_summary, headline, headline_line
from rerec.rl.interrupt import GracefulStop
from rerec.rl.loss import PolicyLossConfig, loss_token_mask, zero_variance_groups
from rerec.rl.packed_logprobs import supports_packed_groups
from rerec.rl.peak_memory import peak_memory
from rerec.rl.policy_builder import TINY, build_policy
from rerec.rl.policy_loading import ModelConfig, reference_policy
from rerec.rl.reward_aggregation import MULTI_OBJECTIVE_AGGREGATIONS, MultiObjectiveAggregation, aggregate_rewards
from rerec.rl.reward_components import RewardComponent, default_reward_components
from rerec.rl.rewards import RecReward, RewardConfig, ScoredRollouts
from rerec.rl.rng_state import capture_rng_state, restore_rng_state
from rerec.rl.rollout import GenerationConfig, Rollouts
from rerec.rl.run_report import RunReport, log_completions_table
from rerec.rl.run_stats import RunStats
from rerec.rl.tiny_model import TinyModelConfig
from rerec.rl.torch_context import default_dtype
from rerec.rl.update import (
    BatchSplit,
    CompletionLogProbs,
    NonFiniteGuard,
    NonFiniteTrainingError,
    UpdateBatch,
    dropout_active,
    update_policy,
)
from rerec.rl.warm_start import WarmStartConfig

log = logging.getLogger("rerec.rl")


@dataclass
class OptimConfig:
    """AdamW for the policy update.

    Args:
        lr: Learning rate (LoRA wants ≈1e-5–5e-5 on real models; the tiny model more).
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: Linear warm-up in optimizer steps, constant after.
    """

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 0


def completion_logprobs_for(policy: torch.nn.Module, generation: GenerationConfig, split: BatchSplit,
                            logits_chunk_size: int | None) -> CompletionLogProbs:
    """How the update computes log-probs: each group's prompt once (G > 1) through the KV cache, or,
    with gradient checkpointing (which turns the cache off), by packing the group into one sequence;
    every row on its own only where neither works (checkpointing with flash attention)."""
    G = generation.num_generations
    checkpointed = bool(getattr(policy, "is_activation_checkpointing", None)  # transformers >= 5.2x name
                        or getattr(policy, "is_gradient_checkpointing", False))
    packed = G > 1 and checkpointed and supports_packed_groups(policy)
    unit = G if G > 1 and (packed or not checkpointed) else 1
    return CompletionLogProbs(unit, split.micro_batch_size, generation.temperature, logits_chunk_size, packed)


def resolve_reference(model: ModelConfig, needs_reference: bool) -> ModelConfig:
    """``model`` with ``reference: auto`` made concrete for full fine-tuning (a frozen copy when the KL
    term or the advantage reads the reference, none otherwise); rejects a run that needs a reference
    and was told to keep none."""
    if needs_reference and model.reference == "none":
        raise ValueError(
            "the KL term (loss.beta > 0) or the advantage estimator reads the reference policy, but "
            "model.reference is 'none': set model.reference to 'auto', or loss.beta to 0"
        )
    if model.mode == "full" and model.reference == "auto":
        return replace(model, reference="copy" if needs_reference else "none")
    return model


class ReRecPolicy(L.LightningModule):
    """The policy under RL fine-tuning (GRPO family) with ReRec's reward, advantage and curriculum hooks.

    Args:
        model: Which model and how to train it: a Hugging Face name/path with ``full``, ``lora`` or
            ``qlora``, or ``name_or_path: tiny`` for the tiny offline model built from the data.
        tiny: Architecture of the tiny model (used when ``model.name_or_path`` is ``tiny``).
        warm_start: Supervised warm start on reasoning traces before RL (cached).
        generation: Rollout sampling (G, temperature, top-p, max completion length).
        engine: What generates rollouts and evaluation answers (``class_path``; default
            ``rerec.rl.engines.HFGenerateEngine``).
        reward: What the reward components share: K and ``require_candidate``.
        reward_funcs: The reward's terms, each with its weight (``class_path`` in
            ``rerec.rl.reward_components`` or your own ``RewardComponent``); ``null``: format 0.1, NDCG@K
            1.0, QAS 0.01, PAS 0.01 (the released reference weights).
        graph: Where the graph rewards get their data (LightGCN embeddings, relation weights).
        advantage: Advantage estimator: ``GRPOAdvantage``, ``RLOOAdvantage``, ``ReinforcePPAdvantage``
            (``rerec.rl.advantages``) or ``rerec.rl.raae.RAAEAdvantage``, with its own options.
        multi_objective_aggregation: How the reward components become the reward the advantage
            estimator normalises (TRL's name). ``sum_then_normalize``: their weighted sum (GRPO).
            ``normalize_then_sum``: each component normalised within its group of G first, then the
            weighted sum (GDPO, Liu et al. 2026; with the estimator's ``scale_rewards: batch`` it is GDPO
            as published). RAAE's token penalties apply to that reward as to the plain sum. The logged
            ``reward`` stays the raw weighted sum. See :mod:`rerec.rl.reward_aggregation`.
        loss: Clipped surrogate, KL, loss aggregation and the zero-std group filter.
        dynamic_sampling: DAPO's dynamic sampling (``enabled``, ``max_num_gen_batches``): update only on
            groups whose rewards vary, drawing more batches of prompts from the curriculum until B of
            them are found; steps that only generate make no optimizer step (``max_steps`` counts
            updates). Logged as ``train/dynamic_sampling/*``. See :mod:`rerec.rl.dynamic_sampling`.
        optim: AdamW settings.
        num_iterations: μ, passes over each rollout batch (1 = purely on-policy: old log-probs are the
            current ones and their extra forward is skipped).
        mini_batch_size: Rollouts per optimizer step (``null`` = the whole batch of B·G); rounded down to
            whole groups of G, at least one group.
        micro_batch_size: Rollouts per forward/backward (gradient accumulation inside a mini-batch);
            rounded down to whole groups of G (a group's rollouts share one prompt forward), at least
            one group. The loss and gradient do not depend on it.
        logits_chunk_size: Completion columns per LM-head call when log-probs are computed (``null``: all
            at once). With a large vocabulary and long completions the ``(rows, T, V)`` float32 logits of a
            micro-batch and their gradient are most of the update's peak memory; a chunk of e.g. 64 keeps
            ``(rows, 64, V)`` and recomputes each chunk's logits in the backward (one more LM-head pass).
            Applies where each group's prompt is shared: always with G > 1, except with gradient
            checkpointing on a flash-attention model.
        max_grad_norm: Gradient clipping by global norm (0 = off).
        log_completions_every_n_steps: Every N steps, log a table of sample completions with their
            rewards and what was read from them (always ``completions.jsonl`` in the run folder; also
            the W&B ``completions`` table with ``--wandb.enabled true``).
        eval_max_new_tokens: Completion budget of evaluation, greedy and sampled (default: the rollout budget).
        eval_samples: n > 0 also measures the held-out set before and after RL with n answers per query
            sampled as in the rollouts (``generation``'s temperature, top-p, top-k): the mean NDCG@1 of a
            sampled answer and pass@n, in ``summary.json`` under ``val_before.sampled`` /
            ``val_after.sampled``. Greedy accuracy moves by whole queries where the policy is near a tie;
            the sampled accuracy measures the distribution RL trains, with far less noise. 0 = off.
        eval_seed: Seed of the sampled evaluation. It runs on its own random stream, so it neither
            shifts training's stream nor differs between before and after except through the policy.
        max_consecutive_skips: An optimizer step whose loss or gradient norm is NaN or infinite is
            skipped (nothing applied, logged with the step and the quantity, counted as
            ``train/skipped_steps`` and in ``summary.json``); this many skips in a row stop the run with
            an error. A checkpoint is never written with non-finite weights, and a non-finite reward
            stops the run naming the component and the query.

    Precision (``trainer.precision``): the trainable weights, their gradients and AdamW's states stay
    float32 under every setting; ``bf16-true`` / ``16-true`` cast only the frozen weights (the base of
    LoRA/QLoRA, a kept reference), so with full fine-tuning they save no weight memory (use
    ``bf16-mixed`` there). The rewards, advantages and loss are computed in float32 either way.

    Reliability (docs/reliability.md): SIGTERM or SIGINT finishes the current step, writes a resumable
    checkpoint (``last.ckpt``) and ``summary.json`` marked ``interrupted``, and exits with 143 / 130; a
    second signal exits at once. Checkpoints carry the random states, so a run resumed with
    ``--ckpt_path`` repeats the uninterrupted run's later steps; ``summary.json``'s ``segments`` tell
    which run folder holds which steps.
    """

    #: Entries a checkpoint of this module must hold (checked before a resume).
    checkpoint_keys = ("rerec",)

    def __init__(
        self,
        model: ModelConfig = ModelConfig(name_or_path=TINY, mode="full", gradient_checkpointing=False),
        tiny: TinyModelConfig = TinyModelConfig(),
        warm_start: WarmStartConfig = WarmStartConfig(),
        generation: GenerationConfig = GenerationConfig(),
        engine: RolloutEngine = lazy_instance(HFGenerateEngine),
        reward: RewardConfig = RewardConfig(),
        reward_funcs: list[RewardComponent] | None = None,
        graph: GraphRewardConfig = GraphRewardConfig(),
        advantage: AdvantageEstimator = lazy_instance(GRPOAdvantage),
        multi_objective_aggregation: MultiObjectiveAggregation = "sum_then_normalize",
        loss: PolicyLossConfig = PolicyLossConfig(),
        dynamic_sampling: DynamicSamplingConfig = DynamicSamplingConfig(),
        optim: OptimConfig = OptimConfig(),
        num_iterations: int = 1,
        mini_batch_size: int | None = None,
        micro_batch_size: int = 16,
        logits_chunk_size: int | None = None,
        max_grad_norm: float = 1.0,
        log_completions_every_n_steps: int = 25,
        eval_max_new_tokens: int | None = None,
        eval_samples: int = 0,
        eval_seed: int = 0,
        max_consecutive_skips: int = 5,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        # QLoRA checkpoints keep only trainable weights; check_policy_state still catches missing keys.
        self.strict_loading = False
        if eval_samples < 0:
            raise ValueError(f"eval_samples must be >= 0, got {eval_samples}")
        self.needs_reference = loss.beta > 0 or advantage.needs_kl
        self.model_config = resolve_reference(model, self.needs_reference)
        if loss.loss_type == "dr_grpo" and loss.max_completion_length is None:
            loss = replace(loss, max_completion_length=generation.max_completion_length)  # a copy: defaults are shared
        self.tiny = tiny
        self.warm_start_config = warm_start
        self.generation = generation
        self.engine = engine
        self.reward_config = reward
        self.reward_funcs = list(reward_funcs) if reward_funcs is not None else default_reward_components()
        self.graph_config = graph
        self.advantage = advantage
        if multi_objective_aggregation not in MULTI_OBJECTIVE_AGGREGATIONS:
            raise ValueError(f"multi_objective_aggregation must be one of {MULTI_OBJECTIVE_AGGREGATIONS}, "
                             f"got {multi_objective_aggregation!r}")
        self.multi_objective_aggregation = multi_objective_aggregation
        self.loss_config = loss
        self.dynamic_sampling = dynamic_sampling
        self.dynamic_sampler: DynamicSampler | None = None
        self._pending = {"generate": 0.0, "score": 0.0, "reward": 0.0}  # generation-only steps' time
        self.optim = optim
        self.split = BatchSplit(num_iterations, mini_batch_size, micro_batch_size)
        if logits_chunk_size is not None and logits_chunk_size < 1:
            raise ValueError(f"logits_chunk_size must be >= 1 or null, got {logits_chunk_size}")
        self.logits_chunk_size = logits_chunk_size
        self.max_grad_norm = max_grad_norm
        self.log_completions_every_n_steps = log_completions_every_n_steps
        self.eval_max_new_tokens = eval_max_new_tokens
        self.eval_samples = eval_samples
        self.eval_seed = eval_seed
        self.policy: torch.nn.Module | None = None
        self.tokenizer = None
        self._data: RecData | None = None
        self.stats = RunStats()
        self.guard = NonFiniteGuard(max_consecutive_skips, any_rank=self._any_rank)
        self._step_rng: dict[str, Any] | None = None  # random states at the end of the last RL step
        self._eval_records: list[EvalRecord] = []
        self.summary: dict[str, Any] = {}

    # ================================================================== building
    @property
    def data(self) -> RecData:
        """The run's data (:class:`~rerec.data.contract.RecData`), from the trainer's data module."""
        if self._data is None:
            dm = self._trainer.datamodule if self._trainer is not None else None
            if dm is None or not callable(getattr(dm, "load", None)):
                raise RuntimeError("ReRecPolicy needs a data module whose load() returns RecData "
                                   "(data: class_path rerec.data.datamodule.RecDataModule)")
            self._data = dm.load()
        return self._data

    def attach_data(self, data: RecData) -> None:
        """Use ``data`` without a Trainer: for scripts that call :meth:`configure_model` themselves."""
        self._data = data

    def configure_model(self) -> None:
        """Build tokenizer, policy (+ warm start), engine, reward and evaluator once, after data setup.

        Built in the default dtype float32 whatever the precision (``bf16-true`` makes it bf16 here): the
        policy takes the dtypes its :class:`ModelConfig` asks for, and Lightning casts it afterwards."""
        if self.policy is not None:
            return
        with default_dtype(torch.float32):
            self._build()

    def _build(self) -> None:
        data = self.data
        built = build_policy(self.model_config, self.tiny, self.warm_start_config, data)
        self.policy, self.tokenizer, self.prompt_ids = built.policy, built.tokenizer, built.prompt_ids
        if built.warm_start:
            self.summary["warm_start"] = built.warm_start
        needs = {s for c in self.reward_funcs if c.weight for s in c.graph_scores}
        scorer = build_graph_scorer(self.graph_config, data, needs)
        if scorer is not None:
            self.graph_scorer = scorer  # a submodule: moves to the policy's device with it
        for component in self.reward_funcs:
            component.setup(data, scorer)
        self.reward = RecReward.for_data(self.reward_config, data, self.reward_funcs)
        self.advantage.setup(data)
        with engine_context(self.engine):
            self.engine.setup(self.policy, self.tokenizer)
        self.logprobs = completion_logprobs_for(self.policy, self.generation, self.split, self.logits_chunk_size)
        if self.dynamic_sampling.enabled:
            self.dynamic_sampler = DynamicSampler(self.dynamic_sampling, self.generation.num_generations,
                                                  self.tokenizer.pad_token_id, self._min_over_ranks)
        self.evaluator = Evaluator(
            self.engine, self.reward, self.prompt_ids, self.generation, self.eval_max_new_tokens,
            data.eval_batch_size, self.reward_config.k, data.attributes, self.eval_seed,
            device=lambda: next(self.policy.parameters()).device,
        )

    # ================================================================== optimisation
    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Follow device moves, but keep trainable float32 weights (and their gradients) in float32 when
        the module is cast to bf16/fp16: ``precision: bf16-true`` casts the whole module before the
        optimizer is built, and a bf16 LoRA weight of |a| ~ 0.01 has a spacing of 6e-5, so AdamW steps
        of ~lr = 2e-5 round to no change. Frozen weights (the base, the reference) are cast."""
        keep = {id(t) for p in self.parameters() if p.requires_grad for t in (p, p.grad) if t is not None}

        def cast(tensor: torch.Tensor) -> torch.Tensor:
            moved = fn(tensor)
            if id(tensor) in keep and tensor.dtype == torch.float32 and moved.dtype in (torch.bfloat16, torch.float16):
                return tensor.to(moved.device)
            return moved

        return super()._apply(cast, recurse)

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, betas=self.optim.betas)
        warm = max(self.optim.warmup_steps, 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches are lists of tasks (plain Python); tensors are made on the device when needed."""
        return batch

    def training_step(self, batch: list[RecTask], batch_idx: int) -> dict[str, GroupStats]:
        # bf16-true makes bf16 the default dtype of the step: rewards, advantages and loss sums made
        # without a dtype would be bf16 (3 significant digits). The policy's own dtypes are unaffected.
        with default_dtype(torch.float32):
            return self._rl_step(batch)

    def _rl_step(self, batch: list[RecTask]) -> dict[str, GroupStats]:
        G = self.generation.num_generations
        if self._step_rng is not None:  # continue the stream of the previous step (or of the checkpoint)
            restore_rng_state(self._step_rng)
        t0 = time.perf_counter()
        try:
            with engine_context(self.engine):
                ro = self.engine.generate([self.prompt_ids[t.query_id] for t in batch], self.generation)
        except RuntimeError as error:  # e.g. "probability tensor contains either `inf`, `nan` or element < 0"
            if not re.search(r"\b(inf|nan)\b", str(error)):
                raise
            raise NonFiniteTrainingError(
                f"RL step {self.stats.rl_steps + 1}: sampling the rollouts failed ({error}): the policy's outputs "
                "are not finite although its weights are; the last optimizer steps made it diverge: lower optim.lr"
            ) from error
        with engine_context(self.engine):
            self.engine.sleep()  # e.g. vLLM frees its KV cache and offloads its weights for the update
        t1 = time.perf_counter()

        scored = self.reward(ro.texts, [t for t in batch for _ in range(G)], self.device,
                             completion_lengths=ro.completion_mask.sum(1),
                             max_completion_length=self.generation.max_completion_length)
        self._check_rewards(scored, batch, ro.texts)
        t_reward = time.perf_counter() - t1
        old_logps, ref_logps = self._old_and_ref_logps(ro)
        weights = {c.name: c.weight for c in self.reward.components}
        rewards = aggregate_rewards(scored.total, scored.components, weights, G, self.multi_objective_aggregation)
        adv = self.advantage(AdvantageInputs(
            rewards=rewards, group_size=G, completion_ids=ro.completion_ids,
            completion_mask=ro.completion_mask, completion_texts=ro.texts, recommended_titles=scored.parsed,
            wrong_titles=scored.wrong_titles, tokenizer=self.tokenizer,
            per_token_kl=self._per_token_kl(ro, old_logps, ref_logps),
        ))
        zero_groups = zero_variance_groups(scored.total, G, self.loss_config.zero_std_tol)
        loss_mask = loss_token_mask(ro.completion_mask, ro.truncated, zero_groups, G, self.loss_config)
        t2 = time.perf_counter()
        group_std = scored.total.view(-1, G).std(dim=1, unbiased=False)
        group_stats = {GROUP_STATS_KEY: GroupStats([t.query_id for t in batch], scored.ndcg.view(-1, G).mean(dim=1),
                                                   group_std)}
        update_batch = UpdateBatch(ro, adv.advantages.to(self.device), loss_mask, old_logps, ref_logps, ro.logprobs,
                                   self._sampling_logps(ro, old_logps))
        sampling: dict[str, float] = {}
        if self.dynamic_sampler is not None:
            offered = self.dynamic_sampler.offer(update_batch, ~zero_groups, len(batch))
            if offered is None:  # too few informative groups yet: generate another batch first
                for part, seconds in (("generate", t1 - t0), ("score", t2 - t1), ("reward", t_reward)):
                    self._pending[part] += seconds
                self._step_rng = capture_rng_state()
                return group_stats
            update_batch, sampling = offered

        self.guard.step = self.stats.rl_steps + 1
        update = update_policy(
            self.policy, update_batch,
            self.logprobs, self.loss_config, self.split, self.manual_backward,
            zero_grad=lambda: self.optimizers().zero_grad(set_to_none=True), optimizer_step=self._optimizer_step,
            guard=self.guard,
        )
        t3 = time.perf_counter()

        metrics = self._step_metrics(ro, scored, group_std, zero_groups, (t0, t1, t2, t3), t_reward)
        metrics.update({**adv.metrics, **update, **sampling, "rollout_tokens": ro.num_completion_tokens})
        metrics = reduce_metrics(metrics)  # every rank's rollouts, not rank 0's shard (no-op on one process)
        tokens = int(metrics.pop("rollout_tokens"))
        pending, self._pending = self._pending, dict.fromkeys(self._pending, 0.0)
        self.stats.record_step({"generate": t1 - t0 + pending["generate"], "score": t2 - t1 + pending["score"],
                                "reward": t_reward + pending["reward"], "update": t3 - t2}, tokens, metrics)
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(batch))
        every = self.log_completions_every_n_steps
        if every and (self.stats.rl_steps == 1 or self.stats.rl_steps % every == 0):
            self._log_completions(batch, ro.texts, scored.total, scored)
        self._step_rng = capture_rng_state()
        return group_stats

    def _check_rewards(self, scored: ScoredRollouts, batch: list[RecTask], texts: list[str]) -> None:
        """Stop with an error naming the component, the query and the completion when a reward is NaN or
        infinite (a reward component's bug: every later step would be poisoned)."""
        G = self.generation.num_generations
        for name, values in [*scored.components.items(), ("total", scored.total)]:
            finite = torch.isfinite(values)
            if bool(finite.all()):
                continue
            rows = (~finite).nonzero().flatten().tolist()
            queries = list(dict.fromkeys(batch[i // G].query_id for i in rows))
            i = rows[0]
            raise NonFiniteTrainingError(
                f"RL step {self.stats.rl_steps + 1}: reward component {name!r} is {float(values[i])} for query "
                f"{batch[i // G].query_id!r} (rollout {i % G}, completion {texts[i][:120]!r}); {len(rows)} "
                f"non-finite values in this batch, queries {queries[:5]}: fix the component"
            )

    def _min_over_ranks(self, value: int) -> int:
        """The smallest ``value`` of all ranks (dynamic sampling: every rank updates on as many groups)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        return int(self.trainer.strategy.reduce(torch.tensor(value, device=self.device), reduce_op="min"))

    def _any_rank(self, decision: bool) -> bool:
        """Whether ``decision`` holds on any rank (all ranks skip the same optimizer steps)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return decision
        return bool(self.trainer.strategy.reduce_boolean_decision(decision, all=False))

    def configure_callbacks(self) -> list[L.Callback]:
        """A clean stop on SIGTERM/SIGINT (:class:`~rerec.rl.interrupt.GracefulStop`); ``curves.png`` and
        the W&B tables and summary (:class:`~rerec.rl.run_report.RunReport`)."""
        return [GracefulStop(), RunReport()]

    def _old_and_ref_logps(self, ro: Rollouts) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Log-probs of the sampling policy (only when the update goes off-policy) and of the reference."""
        n = ro.input_ids.shape[0]
        off_policy = self.split.num_iterations > 1 or (self.split.mini_batch_size or n) < n
        old = self.logprobs.all(self.policy, ro) if off_policy else None
        ref = None
        if self.needs_reference:
            with reference_policy(self.policy) as model:
                ref = self.logprobs.all(model, ro)
        return old, ref

    def _sampling_logps(self, ro: Rollouts, old_logps: torch.Tensor | None) -> torch.Tensor | None:
        """The importance weights' trainer log-probs, taken with dropout off, where the on-policy old
        log-probs would come from the training forward with dropout on (LoRA dropout > 0); else ``None``."""
        if not (self.loss_config.importance_sampling_correction and ro.logprobs is not None and old_logps is None
                and dropout_active(self.policy)):
            return None
        self.policy.eval()
        try:
            return self.logprobs.all(self.policy, ro)
        finally:
            self.policy.train()

    def _per_token_kl(self, ro: Rollouts, old_logps, ref_logps) -> torch.Tensor | None:
        """``log π_old − log π_ref`` for estimators that put the KL into the reward (REINFORCE++)."""
        if not self.advantage.needs_kl:
            return None
        return (old_logps if old_logps is not None else self.logprobs.all(self.policy, ro)) - ref_logps

    def _optimizer_step(self) -> None:
        opt = self.optimizers()
        if self.max_grad_norm:
            self.clip_gradients(opt, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
        opt.step()
        self.lr_schedulers().step()
        self.engine.sync(self.policy)

    def _step_metrics(self, ro: Rollouts, scored, group_std, zero_groups, times, t_reward) -> dict[str, float]:
        t0, t1, t2, t3 = times
        n = len(ro.texts)
        lengths = ro.completion_mask.sum(dim=1).float()
        return {
            "reward": float(scored.total.mean()),
            "reward_std": float(group_std.mean()),
            "frac_reward_zero_std": float(zero_groups.float().mean()),
            "accuracy": sum(scored.correct) / n,
            "completions/mean_length": float(lengths.mean()),
            "completions/max_length": float(lengths.max()),
            "completions/clipped_ratio": float(ro.truncated.float().mean()),
            "completions/parse_rate": sum(p is not None for p in scored.parsed) / n,
            "completions/format_rate": sum(scored.as_asked) / n,  # in the asked format (< parse_rate when lenient)
            "completions/off_candidate_rate": sum(scored.off_candidate) / n,
            "time/generate_s": t1 - t0,
            "time/score_s": t2 - t1,
            "time/reward_s": t_reward,
            "time/update_s": t3 - t2,
            "rollout_tokens_per_s": ro.num_completion_tokens / max(t1 - t0, 1e-9),
            "lr": self.optimizers().param_groups[0]["lr"],
            **{f"memory/peak_{k}": v for k, v in peak_memory(self.device).items()},
            **{f"rewards/{k}/mean": float(v.mean()) for k, v in scored.components.items()},
            **{f"rewards/{k}/std": float(v.std(unbiased=False)) for k, v in scored.components.items()},
        }

    # ================================================================== logging helpers
    def setup(self, stage: str) -> None:
        """Resolve the run folder on every rank. ``trainer.log_dir`` is a broadcast from rank 0, so it
        must be read by all ranks at the same point; later rank-0-only writes use this cached path
        (reading ``log_dir`` there would leave the other ranks out of the broadcast and mismatch their
        next collective)."""
        self._run_dir_path = Path(self.trainer.log_dir or self.trainer.default_root_dir)

    def run_dir(self) -> Path:
        """The run folder (created), resolved on every rank in :meth:`setup`; safe in rank-0-only code."""
        path = getattr(self, "_run_dir_path", None)
        if path is None:  # used without a trainer's setup (scripts): one process, no broadcast to miss
            path = self._run_dir_path = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _log_completions(self, batch, texts, rewards, scored) -> None:
        """Append this step's rollouts to ``completions.jsonl`` and, with W&B, log the ``completions``
        table (:mod:`~rerec.rl.completion_rows`: reward components, parsed title, match kind, RAAE's
        penalised segments)."""
        if not self.trainer.is_global_zero:
            return
        rows = completion_rows(self.stats.rl_steps, batch, texts, scored, self.generation.num_generations,
                               getattr(self.advantage, "segment_by", None))
        with open(self.run_dir() / "completions.jsonl", "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        log_completions_table(self.loggers, rows)

    # ================================================================== evaluation
    def _held_out_summary(self, stage: str) -> tuple[dict[str, Any], dict[str, float]]:
        """Greedy (and, with ``eval_samples``, sampled) held-out accuracy and its metrics to log; writes
        the greedy report ``<stage>.{json,md}``."""
        tasks = self.data.tasks["val"]
        result = self.evaluator.greedy(tasks)
        summary = accuracy_summary(result)
        if self.trainer.is_global_zero:
            write_report(result, self.run_dir(), stage)
        metrics = {f"{stage}/accuracy": summary["accuracy"]}
        if self.eval_samples:
            summary["sampled"] = self.evaluator.sampled(tasks, self.eval_samples)
            metrics[f"{stage}/sampled_accuracy"] = summary["sampled"]["accuracy"]
            metrics[f"{stage}/pass_at_n"] = summary["sampled"]["pass_at_n"]
        log.info("held-out accuracy %s RL: %s", stage.removeprefix("val_"), summary)
        return summary, metrics

    def _eval_epoch_end(self, stage: str) -> None:
        # Lightning's distributed sampler spread the queries over the ranks: score all of them on every rank
        # (every rank gathers, even one without records, so none is left waiting in the collective).
        records = unique_by([r for part in gather_objects(self._eval_records) for r in part], "query_id")
        if not records:
            return
        result = self.evaluator.aggregate(records)
        self._eval_records = []
        flat = {f"{stage}/{k}": v for k, v in result["overall"].items() if isinstance(v, (int, float))}
        for qtype, m in result["by_type"].items():
            flat[f"{stage}/accuracy/{qtype}"] = m["accuracy"]
        self.log_dict(flat, sync_dist=True)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            write_report(result, self.run_dir() / "eval", f"{stage}-step{self.stats.rl_steps}")
            write_report(result, self.run_dir(), f"{stage}_metrics")

    def validation_step(self, batch: list[RecTask], batch_idx: int) -> None:
        self._eval_records += self.evaluator.generate_answers(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: list[RecTask], batch_idx: int) -> None:
        self._eval_records += self.evaluator.generate_answers(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: list[RecTask], batch_idx: int) -> list[EvalRecord]:
        records = self.evaluator.generate_answers(batch)
        self._eval_records += records
        return records

    def on_predict_epoch_end(self) -> None:
        records = unique_by([r for part in gather_objects(self._eval_records) for r in part], "query_id")
        if self.trainer.is_global_zero:
            path = self.run_dir() / "predictions.jsonl"
            write_predictions_jsonl(records, path)
            log.info("predictions written to %s", path)
        self._eval_records = []

    # ================================================================== fit bookkeeping
    def on_train_start(self) -> None:
        ckpt = self.trainer.ckpt_path
        self.stats.begin_segment(str(self.run_dir()), str(ckpt) if ckpt is not None else None)
        if ckpt is None:
            self.summary["val_before"], metrics = self._held_out_summary("val_before")
            self.log_dict(metrics)

    def on_train_end(self) -> None:
        self.summary["val_after"], _ = self._held_out_summary("val_after")
        if "val_before" in self.summary:
            self.summary["headline"] = headline(self.summary["val_before"], self.summary["val_after"])
            log.info("RL on the held-out queries: %s", headline_line(self.summary["headline"]))
        self.write_summary("completed")

    def write_summary(self, status: str, **details: Any) -> None:
        """Write ``summary.json`` into the run folder: the run's numbers and ``status`` — ``completed``,
        ``interrupted`` (``details``: the signal and the checkpoint to continue from) or ``failed``
        (``details``: the error)."""
        self.summary.setdefault("curriculum", [])  # kept up to date by the curriculum callback
        self.summary.update({
            "status": status,
            **details,
            **self.stats.summary(status),
            "optimizer_steps": self.trainer.global_step,
            "skipped_steps": self.guard.skipped,
            "skipped": self.guard.events,
            "seed": int(os.environ["PL_GLOBAL_SEED"]) if "PL_GLOBAL_SEED" in os.environ else None,
            # this process's high-water marks (rank 0's under DDP; each rank logs its own per step)
            "peak_memory": peak_memory(self.device),
        })
        path = self.run_dir() / "summary.json"
        if self.trainer.is_global_zero:
            atomic_write_json(path, self.summary, indent=2, default=str)
            log.info("run summary (%s) written to %s; peak memory %s", status, path,
                     ", ".join(f"{k} {v:.2f}" for k, v in self.summary["peak_memory"].items()))

    # ================================================================== checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = drop_frozen_policy_state(checkpoint["state_dict"], self.policy)
        check_finite_checkpoint(checkpoint, self.trainer.global_step if self._trainer is not None else None)
        checkpoint["rerec"] = {
            **self.stats.state_dict(), "summary": self.summary, "guard": self.guard.state_dict(),
            "rng": self._rng_states_of_all_ranks(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_policy_state(checkpoint["state_dict"], self)
        state = checkpoint.get("rerec", {})
        self.stats.load_state_dict(state)
        self.guard.load_state_dict(state.get("guard", {}))
        self.summary.update(state.get("summary", {}))
        states = state.get("rng")
        if not states:
            log.warning("the checkpoint holds no random states (written by an older ReRec): the resumed run "
                        "will not repeat the uninterrupted run's rollouts")
            return
        rank, world = (self.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)
        if len(states) != world:
            log.warning("the checkpoint's random states are of %d processes, this run has %d: rollouts will "
                        "differ from the uninterrupted run's", len(states), world)
        self._step_rng = states[rank % len(states)]

    def _rng_states_of_all_ranks(self) -> list[dict[str, Any]]:
        """The random states each rank's next RL step starts from, in rank order."""
        state = self._step_rng if self._step_rng is not None else capture_rng_state()
        if self._trainer is None or self.trainer.world_size == 1:
            return [state]
        gathered: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(gathered, state)
        return gathered
