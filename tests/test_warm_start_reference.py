"""After a warm start of a loaded (non-tiny) model, RL's KL reference is the warm-started policy, for
every mode: at RL step 0 the policy and its reference give the same log-probs (KL 0), and both differ
from the model as loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _tiny_hf import save_tiny_pretrained
from rerec.data.datamodule import RecDataModule
from rerec.data.synthetic import SyntheticWorldConfig
from rerec.rl.policy_builder import build_policy
from rerec.rl.policy_loading import LoraConfigSpec, ModelConfig, load_policy, reference_policy
from rerec.rl.tiny_model import TinyModelConfig
from rerec.rl.warm_start import WarmStartConfig

SMALL = SyntheticWorldConfig(num_items=300, num_users=80, num_explicit=40, num_implicit=20, num_misinformed=20,
                             num_interest_records=6)


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ws-ref")
    data = RecDataModule(synthetic=SMALL, world_dir=str(tmp / "world"), num_candidates=5).load()
    return save_tiny_pretrained(tmp / "model"), data


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_reference_is_the_warm_started_policy(setting, mode: str, tmp_path: Path) -> None:
    folder, data = setting
    cfg = ModelConfig(name_or_path=str(folder), mode=mode, torch_dtype="float32", gradient_checkpointing=False,
                      reference="copy" if mode == "full" else "auto", lora=LoraConfigSpec(r=4, dropout=0.0))
    warm = WarmStartConfig(steps=4, target="answer", lr=5e-2, batch_size=4, warmup_steps=1, cache_dir=None)
    built = build_policy(cfg, TinyModelConfig(), warm, data)
    loaded, _ = load_policy(cfg)
    ids = torch.tensor([built.prompt_ids[data.tasks["val"][0].query_id][:24]])
    policy = built.policy.eval()
    with reference_policy(policy) as ref:
        reference = _logits(ref, ids)
    current = _logits(policy, ids)
    assert torch.allclose(reference, current, atol=1e-5)  # KL 0 at RL step 0
    assert not torch.allclose(current, _logits(loaded.eval(), ids), atol=1e-3)  # the warm start moved it
    if mode == "lora":  # fresh adapters on the merged base: RL trains a new adapter from zero
        lora_b = [p for n, p in policy.named_parameters() if "lora_B" in n]
        assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b)
