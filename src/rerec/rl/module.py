"""``ReRecPolicy``: the LightningModule that owns the policy, its rollouts and the clipped policy update.

One training step = one rollout batch (DESIGN §5):

1. generate ``B·G`` completions in one batched ``generate`` call;
2. parse, match and score them (named reward components), compute advantages with the configured
   estimator, report per-query NDCG to the curriculum;
3. ``num_iterations`` passes over the rollouts in mini-batches (one optimizer step each), each split into
   micro-batches for memory: per-token log-probs, clipped surrogate + ``beta``·KL to the reference.

Validation/test generate greedily and report per-query-type metrics; ``summary.json`` is written in the
run folder at the end of every fit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import lazy_instance

from rerec.data.curriculum import curriculum_of, zero_variance_groups
from rerec.data.prompts import build_messages, knowledge_lines, natural_title, reasoning_trace
from rerec.data.tasks import RecTask
from rerec.eval.report import EvalRecord, aggregate, sampled_summary, write_predictions_jsonl, write_report
from rerec.graph.config import GraphRewardConfig, build_graph_scorer
from rerec.rl.advantages import AdvantageEstimator, AdvantageInputs, GRPOAdvantage
from rerec.rl.checkpointing import check_policy_state, drop_frozen_policy_state
from rerec.rl.logprobs import completion_logprobs, grouped_completion_logprobs
from rerec.rl.loss import PolicyLossConfig, policy_loss
from rerec.rl.policy_loading import ModelConfig, load_policy, prepare_policy, reference_policy
from rerec.rl.rewards import RecReward, RewardConfig
from rerec.rl.rollout import GenerationConfig, generate
from rerec.rl.tiny_model import TinyModelConfig, build_tiny_model, build_tokenizer
from rerec.rl.warm_start import (
    WarmStartConfig,
    cache_key,
    run_warm_start,
    sequences_fingerprint,
    vocab_fingerprint,
)

log = logging.getLogger("rerec.rl")

TINY = "tiny"


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


class ReRecPolicy(L.LightningModule):
    """The policy under RL fine-tuning (GRPO family) with ReRec's reward, advantage and curriculum hooks.

    Args:
        model: Which model and how to train it: a Hugging Face name/path with ``full``, ``lora`` or
            ``qlora``, or ``name_or_path: tiny`` for the tiny offline model built from the data.
        tiny: Architecture of the tiny model (used when ``model.name_or_path`` is ``tiny``).
        warm_start: Supervised warm start on reasoning traces before RL (cached).
        generation: Rollout sampling (G, temperature, top-p, max completion length).
        reward: Reward weights (format, NDCG@K, QAS, PAS) and K.
        graph: Where the graph rewards get their data (LightGCN embeddings, relation weights).
        advantage: Advantage estimator: ``GRPOAdvantage``, ``RLOOAdvantage``, ``ReinforcePPAdvantage`` or
            ``RAAEAdvantage`` (``class_path`` in ``rerec.rl.advantages``), with its own options.
        loss: Clipped surrogate, KL and loss aggregation.
        optim: AdamW settings.
        num_iterations: μ, passes over each rollout batch (1 = purely on-policy: old log-probs are the
            current ones and their extra forward is skipped).
        mini_batch_size: Rollouts per optimizer step (``null`` = the whole batch of B·G); rounded down to
            whole groups of G.
        micro_batch_size: Rollouts per forward/backward (gradient accumulation inside a mini-batch),
            rounded down to whole groups: a group's G rollouts share one prompt forward.
        max_grad_norm: Gradient clipping by global norm (0 = off).
        log_completions_every_n_steps: Every N steps, log a table of sample completions with their
            rewards (W&B table when W&B is the logger, always ``completions.jsonl`` in the run folder).
        eval_max_new_tokens: Completion budget of evaluation, greedy and sampled (default: the rollout budget).
        eval_samples: n > 0 also measures the held-out set before and after RL with n answers per query
            sampled as in the rollouts (``generation``'s temperature, top-p, top-k): the mean NDCG@1 of a
            sampled answer and pass@n, in ``summary.json`` under ``val_before.sampled`` /
            ``val_after.sampled``. Greedy accuracy moves by whole queries where the policy is near a tie;
            the sampled accuracy measures the distribution RL trains, with far less noise. 0 = off.
        eval_seed: Seed of the sampled evaluation. It runs on its own random stream, so it neither
            shifts training's stream nor differs between before and after except through the policy.
    """

    def __init__(
        self,
        model: ModelConfig = ModelConfig(name_or_path=TINY, mode="full", gradient_checkpointing=False),
        tiny: TinyModelConfig = TinyModelConfig(),
        warm_start: WarmStartConfig = WarmStartConfig(),
        generation: GenerationConfig = GenerationConfig(),
        reward: RewardConfig = RewardConfig(),
        graph: GraphRewardConfig = GraphRewardConfig(),
        advantage: AdvantageEstimator = lazy_instance(GRPOAdvantage),
        loss: PolicyLossConfig = PolicyLossConfig(),
        optim: OptimConfig = OptimConfig(),
        num_iterations: int = 1,
        mini_batch_size: int | None = None,
        micro_batch_size: int = 16,
        max_grad_norm: float = 1.0,
        log_completions_every_n_steps: int = 25,
        eval_max_new_tokens: int | None = None,
        eval_samples: int = 0,
        eval_seed: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        # QLoRA checkpoints keep only trainable weights; check_policy_state still catches missing keys.
        self.strict_loading = False
        self.model_config = model
        self.tiny = tiny
        self.warm_start_config = warm_start
        self.generation = generation
        self.reward_config = reward
        self.graph_config = graph
        self.advantage = advantage
        self.loss_config = loss
        if loss.loss_type == "dr_grpo" and loss.max_completion_length is None:
            loss.max_completion_length = generation.max_completion_length
        self.optim = optim
        self.num_iterations = num_iterations
        self.mini_batch_size = mini_batch_size
        self.micro_batch_size = micro_batch_size
        self.max_grad_norm = max_grad_norm
        self.log_completions_every_n_steps = log_completions_every_n_steps
        self.eval_max_new_tokens = eval_max_new_tokens
        if eval_samples < 0:
            raise ValueError(f"eval_samples must be >= 0, got {eval_samples}")
        self.eval_samples = eval_samples
        self.eval_seed = eval_seed
        self.policy: torch.nn.Module | None = None
        self.tokenizer = None
        self._prompt_ids: dict[str, list[int]] = {}
        self._metric_sums: dict[str, float] = defaultdict(float)
        self._metric_counts: dict[str, int] = defaultdict(int)
        self._times: dict[str, float] = defaultdict(float)
        self._rollout_tokens = 0
        self._rl_steps = 0
        self._eval_records: list[EvalRecord] = []
        self.summary: dict[str, Any] = {}
        self._standalone_datamodule = None  # see attach_datamodule

    # ================================================================== building
    def attach_datamodule(self, dm) -> None:
        """Use ``dm`` without a Trainer: for scripts that call :meth:`configure_model` themselves
        (``benchmarks/policy_probe.py``); a fit always uses the Trainer's data module."""
        self._standalone_datamodule = dm

    @property
    def datamodule(self):
        dm = self._trainer.datamodule if self._trainer is not None else None
        if dm is None:
            dm = self._standalone_datamodule
        if dm is None or not hasattr(dm, "tasks"):
            raise RuntimeError("ReRecPolicy needs a RecDataModule (data: class_path rerec.data.datamodule.RecDataModule)")
        return dm

    def configure_model(self) -> None:
        """Build tokenizer, policy (+ warm start), reward and prompt cache once, after data setup."""
        if self.policy is not None:
            return
        dm = self.datamodule
        dm.load()
        if self.model_config.name_or_path == TINY:
            entities = (
                [it.title for it in dm.items.values()]
                + [natural_title(it.title) for it in dm.items.values()]  # as requests name them
                + [v for attrs in dm.attributes.values() for r, v in attrs if r != "Genre"]
                if self.tiny.entity_tokens else []
            )
            tokenizer = build_tokenizer(self._tiny_corpus(dm), self.tiny.vocab_size, entities)
            base = build_tiny_model(self.tiny, tokenizer)
            self._maybe_warm_start(base, tokenizer, dm)  # before LoRA/reference: the reference is warm
            policy = prepare_policy(base, tokenizer, self.model_config)
        else:
            policy, tokenizer = load_policy(self.model_config)
            self._maybe_warm_start(policy, tokenizer, dm)
        self.policy, self.tokenizer = policy, tokenizer
        scorer = build_graph_scorer(self.graph_config, self.reward_config, dm)
        if scorer is not None:
            self.graph_scorer = scorer  # a submodule: moves to the policy's device with it
        self.reward = RecReward(
            self.reward_config, dm.items, dm.matcher, scorer,
            max_titles=1 if dm.task == "candidate" else dm.prompt.open_k,
        )
        self._fact_checker = None
        if getattr(self.advantage, "kg_verify", False):
            from rerec.rl.kg_verify import FactChecker

            self._fact_checker = FactChecker(dm.matcher.match, dm.attributes)
        for split in dm.tasks.values():
            for task in split:
                self._prompt_ids[task.query_id] = self._encode_prompt(task, dm)

    def _render(self, task: RecTask, dm) -> str:
        messages = build_messages(task, dm.items, dm.attributes, dm.prompt)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode_prompt(self, task: RecTask, dm) -> list[int]:
        return self.tokenizer(self._render(task, dm), add_special_tokens=False).input_ids

    def _tiny_corpus(self, dm) -> list[str]:
        """Text the tiny tokenizer is trained on: every prompt and every training trace."""
        corpus = []
        for split in [*dm.tasks.values(), dm.warm_start_tasks]:
            for task in split:
                corpus += [m["content"] for m in build_messages(task, dm.items, dm.attributes, dm.prompt)]
        corpus += [reasoning_trace(t, dm.items, dm.attributes) for t in dm.warm_start_tasks if t.candidate_ids]
        return corpus

    def _maybe_warm_start(self, model: torch.nn.Module, tokenizer, dm) -> None:
        cfg = self.warm_start_config
        if cfg.steps <= 0:
            return
        self.tokenizer = tokenizer
        tasks = [t for t in dm.warm_start_tasks if t.candidate_ids][: cfg.max_examples]
        examples = [
            (self._encode_prompt(t, dm), tokenizer(reasoning_trace(t, dm.items, dm.attributes) + tokenizer.eos_token,
                                                   add_special_tokens=False).input_ids)
            for t in tasks
        ]
        knowledge = []
        if cfg.knowledge_batch_size > 0:
            knowledge = [(tokenizer(p, add_special_tokens=False).input_ids, tokenizer(v, add_special_tokens=False).input_ids)
                         for p, v in knowledge_lines(dm.items, dm.attributes)]
        # The vocabulary is part of the key: the tiny tokenizer is trained on the task prompts, so any data
        # setting that changes them (e.g. max_train_queries) changes the token ids the weights refer to.
        # The training sequences themselves are in it too, so a change of the trace or knowledge-line format
        # (code, not config) cannot load weights trained on the old text. Where the cache lives is not:
        # a cache folder moved or shared between clones still hits.
        key = cache_key(
            "warm-start/3", vocab_fingerprint(tokenizer), sequences_fingerprint(examples, knowledge), self.model_config.name_or_path, asdict(self.tiny),
            {**asdict(cfg), "cache_dir": None}, asdict(dm.synthetic),
            asdict(dm.prompt), dm.root, dm.domain, dm.task, dm.num_candidates, dm.negatives, dm.seed,
            dm.test_fraction, dm.val_fraction, dm.warm_start_fraction, dm.query_types,
        )
        # The copy phase draws ordinary tokens (after the special tokens at the start of the vocabulary).
        first = max(tokenizer.all_special_ids) + 1
        stats = run_warm_start(model, examples, cfg, tokenizer.pad_token_id, key, (first, len(tokenizer)), knowledge)
        self.summary["warm_start"] = stats

    # ================================================================== optimisation
    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, betas=self.optim.betas)
        warm = max(self.optim.warmup_steps, 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches are lists of tasks (plain Python); tensors are made on the device when needed."""
        return batch

    def _prompt_batch(self, tasks: list[RecTask]) -> list[list[int]]:
        return [self._prompt_ids[t.query_id] for t in tasks]

    def training_step(self, batch: list[RecTask], batch_idx: int) -> None:
        G = self.generation.num_generations
        device = self.device
        t0 = time.perf_counter()
        ro = generate(self.policy, self.tokenizer, self._prompt_batch(batch), self.generation)
        t1 = time.perf_counter()

        tasks = [t for t in batch for _ in range(G)]
        scored = self.reward(ro.texts, tasks, device)
        rewards = scored.total
        t_reward = time.perf_counter() - t1
        N = rewards.shape[0]
        need_old = self.num_iterations > 1 or (self.mini_batch_size or N) < N
        with torch.no_grad():
            old_logps = self._all_logprobs(self.policy, ro) if need_old else None
            ref_logps = None
            if self.loss_config.beta > 0 or getattr(self.advantage, "needs_kl", False):
                with reference_policy(self.policy) as ref:
                    ref_logps = self._all_logprobs(ref, ro)
        per_token_kl = None
        if getattr(self.advantage, "needs_kl", False):
            base = old_logps if old_logps is not None else self._current_logps(ro)
            per_token_kl = base - ref_logps
        adv_out = self.advantage(
            AdvantageInputs(
                rewards=rewards, group_size=G, completion_ids=ro.completion_ids,
                completion_mask=ro.completion_mask, completion_texts=ro.texts,
                recommended_titles=scored.parsed, wrong_titles=scored.wrong_titles,
                tokenizer=self.tokenizer, per_token_kl=per_token_kl, fact_checker=self._fact_checker,
            )
        )
        advantages = adv_out.advantages.to(device)
        loss_mask = ro.completion_mask.clone()
        dm = self.datamodule
        group_std = rewards.view(-1, G).std(dim=1, unbiased=False)
        zero_groups = zero_variance_groups(rewards, G, dm.curriculum.zero_std_tol)
        if dm.curriculum.zero_std_filter:
            loss_mask &= ~zero_groups.repeat_interleave(G).unsqueeze(1).to(loss_mask.device)
        ctl = curriculum_of(self.trainer)
        if ctl is not None:
            ndcg = scored.components["ndcg"].clamp(min=0).view(-1, G).mean(dim=1)
            ctl.report([t.query_id for t in batch], ndcg, group_std)
        t2 = time.perf_counter()

        update_metrics = self._update(ro, advantages, loss_mask, old_logps, ref_logps)
        t3 = time.perf_counter()

        self._rl_steps += 1
        self._times["generate"] += t1 - t0
        self._times["score"] += t2 - t1
        self._times["reward"] += t_reward
        self._times["update"] += t3 - t2
        tokens = ro.num_completion_tokens
        self._rollout_tokens += tokens
        lengths = ro.completion_mask.sum(dim=1).float()
        metrics = {
            "reward": float(rewards.mean()),
            "reward_std": float(group_std.mean()),
            "frac_reward_zero_std": float(zero_groups.float().mean()),
            "accuracy": sum(scored.correct) / N,
            "completions/mean_length": float(lengths.mean()),
            "completions/max_length": float(lengths.max()),
            "completions/clipped_ratio": float(ro.truncated.float().mean()),
            "completions/parse_rate": sum(p is not None for p in scored.parsed) / N,
            "completions/off_candidate_rate": sum(scored.off_candidate) / N,
            "time/generate_s": t1 - t0,
            "time/score_s": t2 - t1,
            "time/reward_s": t_reward,
            "time/update_s": t3 - t2,
            "rollout_tokens_per_s": tokens / max(t1 - t0, 1e-9),
            "lr": self.optimizers().param_groups[0]["lr"],
            **{f"rewards/{k}/mean": float(v.mean()) for k, v in scored.components.items()},
            **adv_out.metrics,
            **update_metrics,
        }
        if ctl is not None:
            metrics.update(ctl.metrics())
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self._metric_sums[k] += v
                self._metric_counts[k] += 1
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(batch))
        every = self.log_completions_every_n_steps
        if every and (self._rl_steps == 1 or self._rl_steps % every == 0):
            self._log_completions(batch, ro.texts, rewards, scored)

    def _current_logps(self, ro) -> torch.Tensor:
        with torch.no_grad():
            return self._all_logprobs(self.policy, ro)

    @property
    def _group_unit(self) -> int:
        """Rows handled together: a whole group (shared-prompt forward) unless that is not possible."""
        G = self.generation.num_generations
        checkpointing = getattr(self.policy, "is_gradient_checkpointing", False)
        # With gradient checkpointing Hugging Face turns the KV cache off, which the shared forward needs.
        return G if G > 1 and not checkpointing else 1

    def _logprobs(self, model, ro, rows: torch.Tensor, with_entropy: bool = False):
        """Completion log-probs of ``rows`` (whole groups when grouped) under ``model``."""
        unit = self._group_unit
        if unit > 1:
            return grouped_completion_logprobs(
                model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_length, unit,
                self.generation.temperature, with_entropy,
            )
        return completion_logprobs(
            model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_length, None,
            self.generation.temperature, with_entropy,
        )

    def _all_logprobs(self, model, ro) -> torch.Tensor:
        N = ro.input_ids.shape[0]
        step = max(self.micro_batch_size // self._group_unit, 1) * self._group_unit
        return torch.cat([self._logprobs(model, ro, torch.arange(s, min(s + step, N)))[0] for s in range(0, N, step)])

    def _update(self, ro, advantages, loss_mask, old_logps, ref_logps) -> dict[str, float]:
        """μ passes of mini-batch optimizer steps with micro-batch gradient accumulation."""
        opt = self.optimizers()
        sched = self.lr_schedulers()
        N = ro.input_ids.shape[0]
        unit = self._group_unit  # mini/micro-batches hold whole groups so the prompt is shared
        n_units = N // unit
        mini = max((self.mini_batch_size or N) // unit, 1)
        micro = min(max(self.micro_batch_size // unit, 1), mini)
        sums: dict[str, float] = defaultdict(float)
        count = 0
        entropy_sum, entropy_tokens = 0.0, 0
        for _ in range(self.num_iterations):
            shuffle = self.num_iterations > 1 or mini < n_units
            order = torch.randperm(n_units) if shuffle else torch.arange(n_units)
            for start in range(0, n_units, mini):
                units_mini = order[start : start + mini]
                rows_mini = (units_mini.unsqueeze(1) * unit + torch.arange(unit)).flatten()
                opt.zero_grad(set_to_none=True)
                for m in range(0, len(rows_mini), micro * unit):
                    rows = rows_mini[m : m + micro * unit]
                    logps, entropy = self._logprobs(self.policy, ro, rows, with_entropy=True)
                    mask = loss_mask[rows]
                    out = policy_loss(
                        logps, old_logps[rows] if old_logps is not None else logps.detach(),
                        advantages[rows], mask,
                        ref_logps[rows] if ref_logps is not None and self.loss_config.beta > 0 else None,
                        self.loss_config,
                    )
                    # Each micro-batch's aggregated loss, weighted by its share of the mini-batch's rows.
                    self.manual_backward(out.loss * (len(rows) / len(rows_mini)))
                    for k, v in out.metrics.items():
                        sums[k] += v
                    count += 1
                    valid = ro.completion_mask[rows]
                    entropy_sum += float(entropy[valid].sum())
                    entropy_tokens += int(valid.sum())
                if self.max_grad_norm:
                    self.clip_gradients(opt, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
                opt.step()
                sched.step()
        metrics = {k: v / max(count, 1) for k, v in sums.items()}
        metrics["entropy"] = entropy_sum / max(entropy_tokens, 1)
        return metrics

    # ================================================================== logging helpers
    def _run_dir(self) -> Path:
        path = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _log_completions(self, batch, texts, rewards, scored) -> None:
        if not self.trainer.is_global_zero:
            return
        G = self.generation.num_generations
        rows = []
        for i, text in enumerate(texts):
            task = batch[i // G]
            rows.append({
                "step": self._rl_steps, "query_id": task.query_id, "query_type": task.query_type,
                "completion": text, "reward": round(float(rewards[i]), 4), "correct": scored.correct[i],
            })
        with open(self._run_dir() / "completions.jsonl", "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        for logger in self.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                cols = list(rows[0])
                logger.log_table(key="completions", columns=cols, data=[[r[c] for c in cols] for r in rows])

    # ================================================================== evaluation
    @torch.no_grad()
    def generate_answers(self, tasks: list[RecTask], samples: int = 0) -> list[EvalRecord]:
        """Answers for ``tasks`` as evaluation records (parsed, matched, with the truth).

        Greedy by default; ``samples`` > 0 samples that many answers per task as the rollouts do, each
        task's records contiguous.
        """
        cfg = self.generation
        if self.eval_max_new_tokens:
            cfg = GenerationConfig(**{**asdict(cfg), "max_completion_length": self.eval_max_new_tokens})
        n = samples or 1
        ro = generate(self.policy, self.tokenizer, self._prompt_batch(tasks), cfg, num_generations=n,
                      greedy=not samples)
        rows = [t for t in tasks for _ in range(n)]
        scored = self.reward(ro.texts, rows, self.device)
        return [
            EvalRecord(
                query_id=t.query_id, query_type=t.query_type, completion=text,
                parsed_titles=parsed, matched_item_ids=ids, match_kinds=kinds,
                truth_item_ids=list(t.answer_ids), conditions=[tuple(c) for c in t.query.conditions],
                candidate_item_ids=list(t.candidate_ids),
            )
            for t, text, parsed, ids, kinds in zip(rows, ro.texts, scored.parsed, scored.predicted_ids, scored.match_kinds)
        ]

    def _answer_records(self, tasks: list[RecTask], samples: int = 0) -> list[EvalRecord]:
        """:meth:`generate_answers` over ``tasks`` in chunks of ``eval_batch_size`` generated rows."""
        bs = max(1, self.datamodule.eval_batch_size // max(samples, 1))
        records: list[EvalRecord] = []
        for start in range(0, len(tasks), bs):
            records += self.generate_answers(tasks[start : start + bs], samples=samples)
        return records

    def evaluate_tasks(self, tasks: list[RecTask]) -> dict[str, Any]:
        """Aggregate metrics (overall and per query type) of greedy answers to ``tasks``."""
        return aggregate(self._answer_records(tasks), self.reward_config.k, self.datamodule.attributes)

    def evaluate_sampled(self, tasks: list[RecTask], samples: int) -> dict[str, Any]:
        """:func:`~rerec.eval.report.sampled_summary` of ``samples`` sampled answers per task.

        Sampling runs on a forked random stream seeded with ``eval_seed``: the same policy always gets
        the same score, and training's random stream is left where it was.
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        device = next(self.policy.parameters()).device  # where generate() draws its samples
        accelerator = [] if device.type == "cpu" else [device.index or 0]
        with torch.random.fork_rng(devices=accelerator, device_type=device.type if accelerator else None):
            torch.manual_seed(self.eval_seed)
            records = self._answer_records(tasks, samples)
        cfg = self.generation
        return {**sampled_summary(records, samples), "temperature": cfg.temperature, "top_p": cfg.top_p,
                "top_k": cfg.top_k, "max_new_tokens": self.eval_max_new_tokens or cfg.max_completion_length}

    def _held_out_summary(self, stage: str) -> tuple[dict[str, Any], dict[str, float]]:
        """Greedy (and, with ``eval_samples``, sampled) held-out accuracy and its metrics to log; writes
        the greedy report ``<stage>.{json,md}``."""
        tasks = self.datamodule.tasks["val"]
        result = self.evaluate_tasks(tasks)
        summary = self.accuracy_summary(result)
        if self.trainer.is_global_zero:
            write_report(result, self._run_dir(), stage)
        metrics = {f"{stage}/accuracy": summary["accuracy"]}
        if self.eval_samples:
            summary["sampled"] = self.evaluate_sampled(tasks, self.eval_samples)
            metrics[f"{stage}/sampled_accuracy"] = summary["sampled"]["accuracy"]
            metrics[f"{stage}/pass_at_n"] = summary["sampled"]["pass_at_n"]
        log.info("held-out accuracy %s RL: %s", stage.removeprefix("val_"), summary)
        return summary, metrics

    @staticmethod
    def accuracy_summary(result: dict[str, Any]) -> dict[str, Any]:
        return {
            "accuracy": result["overall"]["accuracy"],
            "accuracy_by_type": {t: m["accuracy"] for t, m in result["by_type"].items()},
            "count": result["overall"]["count"],
        }

    def _eval_step(self, batch: list[RecTask]) -> None:
        self._eval_records += self.generate_answers(batch)

    def _eval_epoch_end(self, stage: str) -> None:
        if not self._eval_records:
            return
        result = aggregate(self._eval_records, self.reward_config.k, self.datamodule.attributes)
        self._eval_records = []
        flat = {f"{stage}/{k}": v for k, v in result["overall"].items() if isinstance(v, (int, float))}
        for qtype, m in result["by_type"].items():
            flat[f"{stage}/accuracy/{qtype}"] = m["accuracy"]
        self.log_dict(flat, sync_dist=True)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            write_report(result, self._run_dir() / "eval", f"{stage}-step{self._rl_steps}")
            write_report(result, self._run_dir(), f"{stage}_metrics")

    def validation_step(self, batch: list[RecTask], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: list[RecTask], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: list[RecTask], batch_idx: int) -> list[EvalRecord]:
        records = self.generate_answers(batch)
        self._eval_records += records
        return records

    def on_predict_epoch_end(self) -> None:
        if self.trainer.is_global_zero:
            path = self._run_dir() / "predictions.jsonl"
            write_predictions_jsonl(self._eval_records, path)
            log.info("predictions written to %s", path)
        self._eval_records = []

    # ================================================================== fit bookkeeping
    def on_train_start(self) -> None:
        self._fit_start = time.perf_counter()
        if self.trainer.ckpt_path is None:
            self.summary["val_before"], metrics = self._held_out_summary("val_before")
            self.log_dict(metrics)

    def on_train_epoch_end(self) -> None:
        ctl = curriculum_of(self.trainer)
        if ctl is not None:
            ctl.on_epoch_end(self.trainer)
            self.log_dict({k: float(v) for k, v in ctl.metrics().items()})

    def on_train_end(self) -> None:
        self.summary["val_after"], _ = self._held_out_summary("val_after")
        steps = max(self._rl_steps, 1)
        ctl = curriculum_of(self.trainer)
        self.summary.update({
            "steps": self._rl_steps,
            "optimizer_steps": self.trainer.global_step,
            "wall_time_s": time.perf_counter() - getattr(self, "_fit_start", time.perf_counter()),
            "step_time_s": {k: self._times[k] / steps for k in ("generate", "score", "update")},
            # part of "score": parsing, title matching, NDCG, QAS and PAS (advantages and curriculum excluded)
            "reward_time_s": self._times["reward"] / steps,
            "rollout_tokens_per_s": self._rollout_tokens / max(self._times["generate"], 1e-9),
            "train_metrics_mean": {k: self._metric_sums[k] / self._metric_counts[k] for k in sorted(self._metric_sums)},
            "curriculum": ctl.history if ctl is not None else [],
            "seed": int(os.environ["PL_GLOBAL_SEED"]) if "PL_GLOBAL_SEED" in os.environ else None,
        })
        if self.trainer.is_global_zero:
            path = self._run_dir() / "summary.json"
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(self.summary, fh, indent=2, default=str)
            os.replace(tmp, path)
            log.info("run summary written to %s", path)

    # ================================================================== checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = drop_frozen_policy_state(checkpoint["state_dict"], self.policy)
        checkpoint["rerec"] = {
            "rl_steps": self._rl_steps,
            "times": dict(self._times),
            "rollout_tokens": self._rollout_tokens,
            "metric_sums": dict(self._metric_sums),
            "metric_counts": dict(self._metric_counts),
            "summary": self.summary,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_policy_state(checkpoint["state_dict"], self)
        state = checkpoint.get("rerec", {})
        self._rl_steps = state.get("rl_steps", 0)
        self._times.update(state.get("times", {}))
        self._rollout_tokens = state.get("rollout_tokens", 0)
        self._metric_sums.update(state.get("metric_sums", {}))
        self._metric_counts.update(state.get("metric_counts", {}))
        self.summary.update(state.get("summary", {}))
