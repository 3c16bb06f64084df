"""Policy loading in full and LoRA modes, the reference policy, adapter export and the AdapterExport
callback, on a tiny random Qwen2 saved offline (see tests/_tiny_hf.py). The 4-bit path is in
tests/test_qlora_cpu.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from _tiny_hf import save_tiny_pretrained, tiny_qwen2, tiny_tokenizer
from rerec.rl.policy_loading import (
    LoraConfigSpec,
    ModelConfig,
    QuantConfigSpec,
    configure_tokenizer,
    export_adapter,
    export_pretrained,
    load_policy,
    prepare_policy,
    reference_policy,
)

TEXTS = ["Which film should I watch next?", "A man stranded on an island (2000)."]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pretrained(tmp_path_factory.mktemp("tiny") / "model")


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    return tokenizer(TEXTS, padding=True, return_tensors="pt")


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float()


def _train_steps(model, batch, steps: int = 2, lr: float = 1e-2) -> None:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for _ in range(steps):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def _checkpointing_on(model) -> bool:
    # transformers 5 renamed the property (the old name warns).
    return getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing


def _lora_cfg(path: Path, **kw) -> ModelConfig:
    return ModelConfig(str(path), mode="lora", lora=LoraConfigSpec(r=4, alpha=8, dropout=0.0), **kw)


# --- configuration --------------------------------------------------------------------------------


def test_config_specs_map_to_peft_and_bitsandbytes() -> None:
    lora = LoraConfigSpec(r=4, alpha=8, dropout=0.1).to_peft()
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 8, 0.1)
    assert lora.target_modules == "all-linear"
    assert LoraConfigSpec(target_modules=["q_proj", "v_proj"]).to_peft().target_modules == {"q_proj", "v_proj"}
    bnb = QuantConfigSpec().to_bnb()
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16
    default = ModelConfig("some/model")
    assert (default.mode, default.gradient_checkpointing, default.reference) == ("qlora", True, "auto")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ModelConfig(""), "name_or_path"),
        (lambda: ModelConfig("m", mode="int8"), "mode"),
        (lambda: ModelConfig("m", torch_dtype="float64"), "torch_dtype"),
        (lambda: ModelConfig("m", mode="lora", reference="copy"), "only for mode 'full'"),
        (lambda: ModelConfig("m", reference="frozen"), "reference"),
        (lambda: LoraConfigSpec(r=0), "lora.r"),
        (lambda: LoraConfigSpec(dropout=1.0), "lora.dropout"),
        (lambda: LoraConfigSpec(target_modules=[]), "target_modules"),
        (lambda: QuantConfigSpec(quant_type="int4"), "quant_type"),
    ],
)
def test_config_rejects_bad_values(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# --- tokenizer ------------------------------------------------------------------------------------


def test_tokenizer_pads_left_and_falls_back_to_eos(caplog: pytest.LogCaptureFixture) -> None:
    tok = tiny_tokenizer(with_pad=False)
    assert tok.pad_token is None
    with caplog.at_level(logging.INFO, logger="rerec.rl.policy_loading"):
        configure_tokenizer(tok, "tiny")
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    assert "no pad token" in caplog.text
    batch = _batch(tok)
    mask = batch["attention_mask"]
    short = int(mask.sum(1).argmin())
    assert mask[short, 0] == 0 and mask[short, -1] == 1  # padding on the left
    assert batch["input_ids"][short, 0] == tok.eos_token_id


def test_missing_chat_template_is_a_clear_error(tmp_path: Path) -> None:
    folder = save_tiny_pretrained(tmp_path / "no-template", with_chat_template=False)
    with pytest.raises(ValueError, match="has no chat template") as err:
        load_policy(_lora_cfg(folder))
    assert str(folder) in str(err.value)


def test_tokenizer_larger_than_embedding_is_rejected() -> None:
    tok = tiny_tokenizer()
    model = tiny_qwen2(len(tok) - 1)
    with pytest.raises(ValueError, match="embedding has only"):
        prepare_policy(model, tok, ModelConfig("in-memory", mode="lora"))


# --- full fine-tuning -----------------------------------------------------------------------------


def test_full_mode_trains_everything_and_auto_keeps_a_reference_copy(tiny_dir: Path) -> None:
    model, tok = load_policy(ModelConfig(str(tiny_dir), mode="full"))
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"
    assert all(p.requires_grad for p in model.parameters())
    assert _checkpointing_on(model)
    assert model.config.pad_token_id == tok.pad_token_id == model.generation_config.pad_token_id
    with reference_policy(model) as ref:  # reference "auto" in full mode: a frozen copy, not the policy
        assert ref is not model and not any(p.requires_grad for p in ref.parameters())
    plain, _ = load_policy(ModelConfig(str(tiny_dir), mode="full", reference="none"))
    with pytest.raises(RuntimeError, match="reference='none'"):
        with reference_policy(plain):
            pass
    with pytest.raises(TypeError, match="export_pretrained"):
        export_adapter(model, tiny_dir.parent / "never")


def test_full_mode_reference_copy_stays_at_initial_weights(tiny_dir: Path) -> None:
    model, tok = load_policy(ModelConfig(str(tiny_dir), mode="full", reference="copy"))
    n_params = sum(p.numel() for p in model.parameters())
    plain, _ = load_policy(ModelConfig(str(tiny_dir), mode="full", reference="none"))
    # The copy is not a submodule: not trained, not in the optimizer, not in the checkpoint.
    assert n_params == sum(p.numel() for p in plain.parameters())
    assert model.state_dict().keys() == plain.state_dict().keys()
    batch = _batch(tok)
    before = _logits(model, batch)
    _train_steps(model, batch, steps=1)
    after = _logits(model, batch)
    assert (after - before).abs().max() > 1e-3
    with reference_policy(model) as ref:
        ref_logits = ref(**batch).logits
    assert not ref_logits.requires_grad
    torch.testing.assert_close(ref_logits, before, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="reference='none'"):
        with reference_policy(plain):
            pass


# --- LoRA -----------------------------------------------------------------------------------------


def test_lora_mode_adapts_all_linear_layers_and_reference_disables_them(tiny_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tok = load_policy(_lora_cfg(tiny_dir))
    assert isinstance(model, PeftModel)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(trainable) == 2 * 7 * 2  # A and B, 7 linear layers, 2 decoder layers; lm_head excluded
    assert _checkpointing_on(model.base_model.model)

    batch = _batch(tok)
    base_logits = _logits(AutoModelForCausalLM.from_pretrained(tiny_dir), batch)
    torch.testing.assert_close(_logits(model, batch), base_logits)  # LoRA B starts at zero
    _train_steps(model, batch)
    adapted_logits = _logits(model, batch)
    assert (adapted_logits - base_logits).abs().max() > 1e-3
    with reference_policy(model) as ref:
        assert ref is model
        ref_logits = ref(**batch).logits
    assert not ref_logits.requires_grad
    torch.testing.assert_close(ref_logits, base_logits)
    torch.testing.assert_close(_logits(model, batch), adapted_logits)  # adapters back on after the block


def test_prepare_policy_wraps_an_in_memory_model() -> None:
    from peft import PeftModel

    tok = tiny_tokenizer(with_pad=False)
    model = prepare_policy(tiny_qwen2(len(tok)), tok, ModelConfig("in-memory", mode="lora"))
    assert isinstance(model, PeftModel)
    assert tok.pad_token_id == tok.eos_token_id == model.config.pad_token_id
    assert model.generation_config.pad_token_id == tok.eos_token_id
    with pytest.raises(ValueError, match="already has peft adapters"):
        prepare_policy(model, tok, ModelConfig("in-memory", mode="lora"))


# --- export ---------------------------------------------------------------------------------------


def test_export_adapter_round_trip_gives_identical_logits(tiny_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tok = load_policy(_lora_cfg(tiny_dir))
    batch = _batch(tok)
    out = tmp_path / "exports" / "adapter"
    for round_ in range(2):  # the second export replaces the first in place
        _train_steps(model, batch, steps=1)
        assert export_adapter(model, out, tok) == out
        assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
            p.name for p in out.iterdir()
        }
        assert [p.name for p in out.parent.iterdir()] == ["adapter"], "temporary folders left behind"
        assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_dir)
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), out)
        torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch), rtol=0, atol=0)


def test_export_pretrained_writes_a_loadable_full_model(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = load_policy(ModelConfig(str(tiny_dir), mode="full", gradient_checkpointing=False))
    batch = _batch(tok)
    _train_steps(model, batch, steps=1)
    out = export_pretrained(model, tmp_path / "full", tok)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch), rtol=0, atol=0)
    assert AutoTokenizer.from_pretrained(out).chat_template == tok.chat_template


# --- AdapterExport callback -----------------------------------------------------------------------


class _TinyPolicyModule:
    """Built lazily so importing this file does not import Lightning."""

    @staticmethod
    def make(policy, tokenizer, batch):
        import lightning.pytorch as pl
        from torch.utils.data import DataLoader, TensorDataset

        from rerec.rl.checkpointing import check_policy_state, drop_frozen_policy_state

        class Module(pl.LightningModule):
            strict_loading = False

            def __init__(self) -> None:
                super().__init__()
                self.policy = policy
                self.tokenizer = tokenizer

            def on_save_checkpoint(self, checkpoint):
                checkpoint["state_dict"] = drop_frozen_policy_state(checkpoint["state_dict"], self.policy)

            def on_load_checkpoint(self, checkpoint):
                check_policy_state(checkpoint["state_dict"], self)

            def training_step(self, b, _idx):
                ids, mask = b
                return self.policy(input_ids=ids, attention_mask=mask, labels=ids).loss

            def configure_optimizers(self):
                return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=1e-2)

            def train_dataloader(self):
                return DataLoader(TensorDataset(batch["input_ids"], batch["attention_mask"]), batch_size=2)

        return Module()


def _fit(module, root: Path, max_steps: int = 4, **export_kw):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from rerec.rl.checkpointing import AdapterExport

    trainer = pl.Trainer(
        default_root_dir=root,
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(root),
        callbacks=[ModelCheckpoint(every_n_train_steps=2, save_top_k=-1), AdapterExport(**export_kw)],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module)
    return trainer


def test_adapter_export_callback_writes_step_and_final_adapters(tiny_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tok = load_policy(_lora_cfg(tiny_dir, gradient_checkpointing=False))
    batch = _batch(tok)
    trainer = _fit(_TinyPolicyModule.make(model, tok, batch), tmp_path)
    run_dir = Path(trainer.log_dir)
    ckpt_dir = Path(trainer.checkpoint_callback.dirpath)
    assert sorted(p.name for p in ckpt_dir.glob("*.ckpt")) == ["epoch=1-step=2.ckpt", "epoch=3-step=4.ckpt"]
    assert sorted(p.name for p in ckpt_dir.glob("adapter-*")) == ["adapter-step2", "adapter-step4"]
    assert not list(ckpt_dir.glob(".*")) and not list(run_dir.glob(".*")), "temporary folders left behind"
    for folder in (ckpt_dir / "adapter-step2", ckpt_dir / "adapter-step4", run_dir / "adapter-final"):
        assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
            p.name for p in folder.iterdir()
        }
    final = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), run_dir / "adapter-final")
    torch.testing.assert_close(_logits(final, batch), _logits(model, batch), rtol=0, atol=0)
    step2 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), ckpt_dir / "adapter-step2")
    assert (_logits(step2, batch) - _logits(model, batch)).abs().max() > 1e-4  # an earlier state

    # The Lightning checkpoint holds only the LoRA weights, and restores them into a fresh policy.
    ckpt = torch.load(ckpt_dir / "epoch=3-step=4.ckpt", weights_only=False)
    keys = list(ckpt["state_dict"])
    assert keys and all(k.startswith("policy.") and ".lora_" in k for k in keys)
    fresh, _ = load_policy(_lora_cfg(tiny_dir, gradient_checkpointing=False))
    resumed = _TinyPolicyModule.make(fresh, tok, batch)
    resumed.on_load_checkpoint(ckpt)
    resumed.load_state_dict(ckpt["state_dict"], strict=resumed.strict_loading)
    torch.testing.assert_close(_logits(fresh, batch), _logits(model, batch), rtol=0, atol=0)
    del ckpt["state_dict"][keys[0]]
    with pytest.raises(KeyError, match="lacks 1 entries"):
        resumed.on_load_checkpoint(ckpt)


def test_adapter_export_callback_keeps_newest_and_saves_full_models(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    lora, tok = load_policy(_lora_cfg(tiny_dir, gradient_checkpointing=False))
    batch = _batch(tok)
    exports = tmp_path / "exports"
    _fit(_TinyPolicyModule.make(lora, tok, batch), tmp_path / "lora", max_steps=6, dirpath=str(exports), max_keep=2)
    assert sorted(p.name for p in exports.iterdir()) == ["adapter-step4", "adapter-step6"]

    full, tok = load_policy(ModelConfig(str(tiny_dir), mode="full", gradient_checkpointing=False))
    trainer = _fit(_TinyPolicyModule.make(full, tok, batch), tmp_path / "full")
    run_dir = Path(trainer.log_dir)
    assert not list(run_dir.rglob("adapter-*"))
    reloaded = AutoModelForCausalLM.from_pretrained(run_dir / "model-final")
    torch.testing.assert_close(_logits(reloaded, batch), _logits(full, batch), rtol=0, atol=0)


def test_custom_tokenizer_beside_a_qwen2_config_keeps_its_token_ids(tmp_path: Path) -> None:
    # A GPT-2-style byte-level BPE (not Qwen's pre-tokeniser): transformers 5 would reload it as a
    # Qwen2Tokenizer that splits "Hanks's" and double spaces differently.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(["Tom Hanks's film  about an island (1994)"] * 10, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = tiny_tokenizer().chat_template
    folder = tmp_path / "custom"
    tiny_qwen2(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)

    _, loaded = load_policy(_lora_cfg(folder))
    text = "Tom Hanks's film  about an island (1994)"
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]


def test_a_hub_name_warns_without_revision_and_never_downloads_offline(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """HF_HUB_OFFLINE=1 (tests/conftest.py): a model missing from the cache is a clear error, and no
    connection is even attempted."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted while HF_HUB_OFFLINE=1")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with caplog.at_level(logging.WARNING, logger="rerec.rl.policy_loading"):
        with pytest.raises(OSError, match=r"'rerec-tests/no-such-model' \(revision 0123abc\) is not in the local"):
            load_policy(ModelConfig("rerec-tests/no-such-model", mode="full", revision="0123abc"))
        assert "without model.revision" not in caplog.text
        with pytest.raises(OSError, match="HF_HUB_OFFLINE=1 forbids downloading"):
            load_policy(ModelConfig("rerec-tests/no-such-model", mode="full"))
        assert "'rerec-tests/no-such-model' is a Hugging Face hub name without model.revision" in caplog.text
        caplog.clear()
        load_policy(ModelConfig(str(tiny_dir), mode="full", gradient_checkpointing=False))  # a local folder
        assert "model.revision" not in caplog.text
