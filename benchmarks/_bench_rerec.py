"""The ReRec side of ``vs_trl.py``: one RL step exactly as ``ReRecPolicy.training_step`` runs it
(rollout engine → reward → group advantages → reference / old log-probs → ``update_policy``), timed per
part, without Lightning's loop around it (which adds well under a millisecond a step).

Run by the driver: ``python benchmarks/_bench_rerec.py SETTINGS.json``; prints one JSON record.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from _bench_common import RunSettings, WorkerResult, pin_threads, prompt_ids_digest, reward_fn


def main(settings_path: str) -> None:
    s = RunSettings(**json.loads(Path(settings_path).read_text()))
    pin_threads(s.threads)
    torch.manual_seed(s.seed)
    from rerec.rl.advantages import AdvantageInputs, GRPOAdvantage
    from rerec.rl.engines import HFGenerateEngine
    from rerec.rl.loss import PolicyLossConfig
    from rerec.rl.module import completion_logprobs_for
    from rerec.rl.peak_memory import peak_memory
    from rerec.rl.policy_loading import LoraConfigSpec, ModelConfig, load_policy, reference_policy
    from rerec.rl.rollout import GenerationConfig
    from rerec.rl.update import BatchSplit, CompletionLogProbs, NonFiniteGuard, UpdateBatch, update_policy

    needs_ref = s.beta > 0
    cfg = ModelConfig(
        name_or_path=s.model_dir, mode=s.mode, torch_dtype="float32", gradient_checkpointing=s.gradient_checkpointing,
        reference=("copy" if needs_ref else "none") if s.mode == "full" else "auto",
        lora=LoraConfigSpec(r=16, alpha=32, dropout=s.lora_dropout, target_modules="all-linear"),
    )
    policy, tokenizer = load_policy(cfg)
    policy.train()
    prompt_ids = [tokenizer(p)["input_ids"] for p in s.prompts]
    G = s.num_generations
    engine = HFGenerateEngine()
    engine.setup(policy, tokenizer)
    gen = GenerationConfig(num_generations=G, temperature=s.temperature, max_completion_length=s.max_completion_length)
    split = BatchSplit(s.num_iterations, None, s.micro_batch_size)
    if s.packed_groups or not s.gradient_checkpointing:  # as ReRecPolicy.setup chooses
        logprobs = completion_logprobs_for(policy, gen, split, s.logits_chunk)
    else:  # checkpointing turns the KV cache off, and without packing every row is scored alone
        logprobs = CompletionLogProbs(1, s.micro_batch_size, s.temperature, s.logits_chunk)
    loss_cfg = PolicyLossConfig(epsilon=0.2, beta=s.beta, loss_type="token_mean")
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.learning_rate, betas=(0.9, 0.99), weight_decay=0.0)
    advantage = GRPOAdvantage()

    def optimizer_step() -> None:
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    out = WorkerResult("rerec", prompt_ids_sha=prompt_ids_digest(prompt_ids),
                       versions={"torch": torch.__version__})
    for _ in range(s.steps):
        t0 = time.perf_counter()
        ro = engine.generate(prompt_ids, gen)
        t1 = time.perf_counter()
        rewards = torch.tensor(reward_fn(ro.texts))
        adv = advantage(AdvantageInputs(rewards=rewards, group_size=G, completion_mask=ro.completion_mask,
                                        completion_ids=ro.completion_ids, completion_texts=ro.texts,
                                        tokenizer=tokenizer))
        old = logprobs.all(policy, ro) if s.num_iterations > 1 else None
        ref = None
        if needs_ref:
            with reference_policy(policy) as model:
                ref = logprobs.all(model, ro)
        t2 = time.perf_counter()
        update_policy(policy, UpdateBatch(ro, adv.advantages, ro.completion_mask, old, ref), logprobs, loss_cfg,
                      split, backward=lambda loss: loss.backward(), zero_grad=lambda: opt.zero_grad(set_to_none=True),
                      optimizer_step=optimizer_step, guard=NonFiniteGuard(5))
        t3 = time.perf_counter()
        out.step_s.append(t3 - t0)
        out.generate_s.append(t1 - t0)
        out.score_s.append(t2 - t1)
        out.update_s.append(t3 - t2)
        out.completion_tokens.append(ro.num_completion_tokens)
    out.peak_rss_gb = peak_memory()["cpu_rss_gb"]
    print("RESULT " + out.dumps())


if __name__ == "__main__":
    main(sys.argv[1])
