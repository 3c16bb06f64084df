"""The TRL side of ``vs_trl.py``: TRL's ``GRPOTrainer`` on the same saved model, prompts and settings.

One optimizer step per rollout batch of B·G completions (``steps_per_generation`` = gradient
accumulation steps, each of ``micro_batch_size`` rows). The step is timed by a trainer callback; the
split wraps TRL's own methods: generation is ``_generate_single_turn`` (the ``generate`` call), scoring
is the rest of ``_generate_and_score_completions`` (rewards, advantages, old and reference log-probs),
the update is the step less both. Float32 (TRL defaults to bf16) and gradient checkpointing as the settings say (off unless set; TRL's default is on), as on ReRec's side; no logging, no checkpoints.

Run by the driver: ``python benchmarks/_bench_trl.py SETTINGS.json``; prints one JSON record.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from _bench_common import RunSettings, WorkerResult, pin_threads, prompt_ids_digest, reward_fn


def main(settings_path: str) -> None:
    s = RunSettings(**json.loads(Path(settings_path).read_text()))
    pin_threads(s.threads)
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rerec.rl.peak_memory import peak_memory

    G, rows = s.num_generations, s.batch_prompts * s.num_generations
    if rows % s.micro_batch_size:
        raise ValueError(f"B·G = {rows} is not a multiple of micro_batch_size {s.micro_batch_size}")
    accumulation = rows // s.micro_batch_size
    tokenizer = AutoTokenizer.from_pretrained(s.model_dir)
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"), use_cpu=True, bf16=False, fp16=False,
        per_device_train_batch_size=s.micro_batch_size, gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation, num_generations=G, max_completion_length=s.max_completion_length,
        temperature=s.temperature, top_k=0, top_p=1.0, num_iterations=s.num_iterations, beta=s.beta,
        learning_rate=s.learning_rate, adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0, epsilon=0.2,
        loss_type="dapo", max_steps=s.steps * s.num_iterations, logging_steps=10**6, save_strategy="no", report_to="none",
        shuffle_dataset=False, seed=s.seed, dataloader_num_workers=0, disable_tqdm=True,
        generation_kwargs={"min_new_tokens": s.max_completion_length},
        gradient_checkpointing=s.gradient_checkpointing,  # TRL's default is on; both sides follow the settings
        model_init_kwargs={"dtype": torch.float32},
    )

    def reward(completions: list[str], **_: object) -> list[float]:
        return reward_fn(completions)

    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=s.lora_dropout, target_modules="all-linear",
                             task_type="CAUSAL_LM") if s.mode == "lora" else None
    trainer = GRPOTrainer(model=s.model_dir, reward_funcs=reward, args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": s.prompts * (s.steps * 2)}),
                          peft_config=peft_config)
    out = WorkerResult("trl", versions={"trl": trl.__version__, "transformers": transformers.__version__,
                                        "torch": torch.__version__})
    spent = {"generate": 0.0, "generate_and_score": 0.0, "tokens": 0}
    prompts_seen: list[list[int]] = []

    generate_single_turn = trainer._generate_single_turn
    generate_and_score = trainer._generate_and_score_completions

    def timed_generate(prompt_ids, *a, **k):
        if not prompts_seen:
            prompts_seen.extend(prompt_ids)
        t = time.perf_counter()
        result = generate_single_turn(prompt_ids, *a, **k)
        spent["generate"] += time.perf_counter() - t
        return result

    def timed_generate_and_score(*a, **k):
        t = time.perf_counter()
        result = generate_and_score(*a, **k)
        spent["generate_and_score"] += time.perf_counter() - t
        spent["tokens"] += int(result["completion_mask"].sum())
        return result

    trainer._generate_single_turn = timed_generate
    trainer._generate_and_score_completions = timed_generate_and_score

    class StepTimer(TrainerCallback):
        """One record per rollout batch: with μ > 1 TRL takes μ optimizer steps on one generation (the
        later ones reuse its buffer), which together are one ReRec step."""

        optimizer_steps = 0
        step = 0.0

        def on_step_begin(self, *_, **__):
            if self.optimizer_steps % s.num_iterations == 0:
                spent.update(generate=0.0, generate_and_score=0.0, tokens=0)
                self.step = 0.0
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.step += time.perf_counter() - self.t0
            self.optimizer_steps += 1
            if self.optimizer_steps % s.num_iterations:
                return
            out.step_s.append(self.step)
            out.generate_s.append(spent["generate"])
            out.score_s.append(spent["generate_and_score"] - spent["generate"])
            out.update_s.append(self.step - spent["generate_and_score"])
            out.completion_tokens.append(spent["tokens"])

    trainer.add_callback(StepTimer())
    trainer.train()
    # TRL generates G completions per prompt from a batch that repeats each prompt G times.
    out.prompt_ids_sha = prompt_ids_digest(prompts_seen[::G])
    out.peak_rss_gb = peak_memory()["cpu_rss_gb"]
    print("RESULT " + out.dumps())


if __name__ == "__main__":
    main(sys.argv[1])
