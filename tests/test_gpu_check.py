"""``benchmarks/gpu_check.py --device cpu --shape tiny``: every stage runs and reports, the JSON file
holds what stdout prints, and the trainer stages show the recipe's fixes (float32 adapter and AdamW
states under both precisions, prompts shared under checkpointing, vLLM's start outside Lightning's
contexts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("bitsandbytes")


def test_gpu_check_smoke_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--shape", "tiny", "--strict",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert json.loads(out.read_text()) == report
    stages = report["stages"]
    assert list(stages) == ["environment", "lightning_contexts", "model_folder", "update/bf16-mixed", "update/bf16-true", "vllm"]
    assert not [name for name, s in stages.items() if "error" in s], {n: s.get("error") for n, s in stages.items()}
    contexts = stages["lightning_contexts"]["result"]
    assert contexts["bf16-true"]["configure_model"]["default_dtype"] == "torch.bfloat16"  # what Lightning sets
    for precision in ("bf16-mixed", "bf16-true"):
        for where in ("configure_model", "training_step"):
            neutral = contexts[precision][f"{where}/neutral_context"]
            assert (neutral["default_dtype"], neutral["default_device"], neutral["autocast"]) == ("torch.float32", None, False)
        update = stages[f"update/{precision}"]["result"]
        assert update["trainable_dtypes"] == ["torch.float32"] and update["adam_state_dtypes"] == ["torch.float32"]
        assert update["lora_a_moved_fraction"] > 0.99
        assert update["logprobs_layout"] == {"rows_per_prompt_forward": 2, "packed": True}
        assert update["update_s"] > 0 and update["reference_pass_s"] > 0
    env = stages["environment"]["result"]
    assert env["torch"] and env["bitsandbytes"]
    vllm = stages["vllm"]
    assert ("skipped" in vllm) == (env["vllm"] is None)


def test_the_rollout_benchmark_builds_its_qlora_policy(tmp_path: Path) -> None:
    """``rollout_engines.py --mode qlora`` stopped at "has no chat template": its random-weight folder had
    no tokenizer."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    import rollout_engines

    from rerec.rl.policy_loading import is_4bit

    folder = rollout_engines.build_model("tiny", torch.float32, tmp_path / "model", 512)
    policy = rollout_engines.load_policy_for("qlora", folder, torch.float32, "cpu")
    assert is_4bit(policy.get_base_model()) and any(p.requires_grad for p in policy.parameters())
