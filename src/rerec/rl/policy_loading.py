"""Policy model loading: full fine-tuning, LoRA, or QLoRA (4-bit NF4 base + LoRA), the reference policy
for the KL term, and atomic export of adapters / models.

Entry points:

- :func:`load_policy` — a Hugging Face causal LM by hub name or local folder, prepared for training.
- :func:`prepare_policy` — the same preparation for a model built in memory (the tiny builder).
- :func:`reference_policy` — context manager yielding the module that computes the reference log-probs.
- :func:`rebase_policy` — after a warm start: the warm-started weights become the reference.
- :func:`export_adapter` / :func:`export_pretrained` — standard peft / transformers folders, written
  atomically (temporary folder in the same parent, then ``os.replace``).

The bitsandbytes CPU trap: on CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a
``Linear4bit`` weight into a CPU-only layout on its first eval-mode, no-grad forward (e.g. during
``generate``); later training forwards then run a kernel without autograd — silently wrong gradients
for bias-free layers, a ``RuntimeError`` for layers with a bias. :func:`disable_cpu_weight_repacking`
switches that off on every ``Linear4bit`` and is applied to every 4-bit model this module prepares.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rerec.atomic import atomic_directory

log = logging.getLogger(__name__)

Mode = Literal["full", "lora", "qlora"]
DTypeName = Literal["auto", "bfloat16", "float16", "float32"]
ComputeDTypeName = Literal["bfloat16", "float16", "float32"]
ReferenceKind = Literal["auto", "copy", "none"]

# Plain (non-Module) attribute on the prepared model that records how to build the reference policy.
_REFERENCE_ATTR = "rerec_reference"


@dataclass
class LoraConfigSpec:
    """LoRA adapter settings (peft ``LoraConfig``), used by modes ``lora`` and ``qlora``.

    Args:
        r: rank of the low-rank update.
        alpha: scaling numerator; the update is multiplied by ``alpha / r``.
        dropout: dropout on the adapter input during training (0 disables it).
        target_modules: modules that get adapters: ``"all-linear"`` (every linear layer except the output
            head) or a list of module-name suffixes such as ``["q_proj", "v_proj"]``.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"lora.r must be > 0, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("lora.target_modules must be 'all-linear' or a non-empty list of module names")

    def to_peft(self) -> Any:
        """The equivalent ``peft.LoraConfig`` for a causal LM."""
        from peft import LoraConfig

        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            bias="none",
            task_type="CAUSAL_LM",
        )


@dataclass
class QuantConfigSpec:
    """4-bit quantisation of the frozen base model (bitsandbytes), used by mode ``qlora``.

    Args:
        quant_type: 4-bit data type: ``"nf4"`` (NormalFloat, the QLoRA default) or ``"fp4"``.
        double_quant: also quantise the per-block scales (saves ~0.4 bit per weight).
        compute_dtype: dtype the 4-bit weights are dequantised to for the matmul.
    """

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: ComputeDTypeName = "bfloat16"

    def __post_init__(self) -> None:
        if self.quant_type not in ("nf4", "fp4"):
            raise ValueError(f"quant.quant_type must be 'nf4' or 'fp4', got {self.quant_type!r}")
        if self.compute_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"quant.compute_dtype must be bfloat16/float16/float32, got {self.compute_dtype!r}")

    def to_bnb(self) -> Any:
        """The equivalent ``transformers.BitsAndBytesConfig``."""
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, self.compute_dtype),
        )


@dataclass
class ModelConfig:
    """Which causal LM to train and how.

    Modes: ``full`` trains every weight; ``lora`` freezes the base (in ``torch_dtype``) and trains LoRA
    adapters; ``qlora`` loads the base in 4 bits (``quant``) and trains LoRA adapters on top — the
    non-quantised weights (embeddings, norms, output head) are upcast to float32 for stable training
    (peft's ``prepare_model_for_kbit_training``). 4-bit bases are loaded directly onto the GPU of the
    local rank (``LOCAL_RANK``, default 0) when CUDA is available, else onto the CPU; other modes load on
    the CPU and Lightning moves them.

    The tokenizer is always set to pad on the LEFT (batched generation); when it has no pad token, its
    EOS token is used as pad (so padding is identified by the attention mask, never by the token id).
    A chat template is required.

    Args:
        name_or_path: Hugging Face hub name (e.g. ``Qwen/Qwen2.5-3B-Instruct``), a local folder holding
            the model and its tokenizer, or a ``.gguf`` file (imported once into a folder under
            ``.cache/rerec/models``: ``python -m rerec.gguf_import``). A hub model must already be in the
            local cache when ``HF_HUB_OFFLINE=1``.
        mode: ``"full"``, ``"lora"`` or ``"qlora"``.
        torch_dtype: dtype of the (non-quantised) weights: ``"auto"`` keeps the checkpoint's dtype.
        lora: LoRA settings (modes ``lora`` and ``qlora``).
        quant: 4-bit settings (mode ``qlora``).
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant) to save memory.
        trust_remote_code: allow model/tokenizer code shipped with the checkpoint to run.
        attn_implementation: attention kernel passed to ``from_pretrained`` (``"sdpa"`` when unset;
            e.g. ``"eager"`` or ``"flash_attention_2"``). Models built in memory keep theirs.
        revision: hub branch, tag or commit hash to load; a commit hash pins the exact weights and
            tokenizer (default: the hub's default branch, which can change: a warning is logged when a
            hub name is given without a revision). Nothing is downloaded when ``HF_HUB_OFFLINE=1``.
        reference: reference policy for the KL term. ``"auto"``: modes ``lora``/``qlora`` use the same
            model with its adapters disabled (no second copy); mode ``full`` keeps a frozen copy of the
            initial weights when the run reads the reference (``loss.beta`` > 0) and none otherwise.
            ``"copy"``: always keep that frozen copy (mode ``full`` only; doubles weight memory).
            ``"none"``: no reference (only with ``loss.beta: 0``).
    """

    name_or_path: str
    mode: Mode = "qlora"
    torch_dtype: DTypeName = "auto"
    lora: LoraConfigSpec = field(default_factory=LoraConfigSpec)
    quant: QuantConfigSpec = field(default_factory=QuantConfigSpec)
    gradient_checkpointing: bool = True
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    revision: str | None = None
    reference: ReferenceKind = "auto"

    def __post_init__(self) -> None:
        if not self.name_or_path:
            raise ValueError("model.name_or_path is empty: give a hub name or a local folder")
        if self.mode not in ("full", "lora", "qlora"):
            raise ValueError(f"model.mode must be 'full', 'lora' or 'qlora', got {self.mode!r}")
        if self.torch_dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"model.torch_dtype must be auto/bfloat16/float16/float32, got {self.torch_dtype!r}")
        if self.reference not in ("auto", "copy", "none"):
            raise ValueError(f"model.reference must be 'auto', 'copy' or 'none', got {self.reference!r}")
        if self.reference == "copy" and self.mode != "full":
            raise ValueError(
                f"model.reference='copy' is only for mode 'full'; mode {self.mode!r} gets its reference "
                "for free by disabling the adapters (reference='auto')"
            )


@dataclass
class _ReferenceSpec:
    """How :func:`reference_policy` finds the reference; a plain object so it is no submodule (not in
    ``state_dict``, not in ``parameters()``)."""

    kind: ReferenceKind
    frozen: nn.Module | None = None


# ---------------------------------------------------------------------------------------------------
# Tokenizer


def configure_tokenizer(tokenizer: Any, source: str = "<tokenizer>") -> Any:
    """Set left padding and a pad token, and require a chat template; returns the same tokenizer.

    Args:
        tokenizer: a transformers tokenizer.
        source: where it came from, for error messages.

    Raises:
        ValueError: no chat template, or neither a pad nor an EOS token.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer of {source!r} has no chat template (tokenizer.chat_template is empty); ReRec builds "
            "its prompts with apply_chat_template — use an instruct/chat checkpoint or set one"
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {source!r} has neither a pad token nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
        log.info("tokenizer of %r has no pad token; padding with its EOS token %r", source, tokenizer.eos_token)
    tokenizer.padding_side = "left"
    return tokenizer


# Spaces, apostrophes, digits, accents, newlines, braces: where pre-tokenisers differ.
PROBE_TEXT = "Tom Hanks's film  Amélie (1994)\n\n\\boxed{Cast Away}; 12345 naïve\tend"


def _matches_tokenizer_json(tokenizer: Any, tokenizer_json: Path) -> bool:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tokenizer_json)).encode(PROBE_TEXT, add_special_tokens=False).ids
    return raw == tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]


def load_tokenizer(cfg: ModelConfig) -> Any:
    """``AutoTokenizer`` for ``cfg.name_or_path``, configured by :func:`configure_tokenizer`.

    For a local folder with a ``tokenizer.json``, the loaded tokenizer must encode a probe string exactly
    like that file: transformers 5 rebuilds the tokenizer of some model types (e.g. any ``qwen2`` folder
    becomes a ``Qwen2Tokenizer`` with Qwen's own pre-tokeniser), which silently changes the token ids of
    a custom tokenizer such as the tiny world's. On a mismatch the folder's ``tokenizer.json`` is loaded
    as is (``PreTrainedTokenizerFast``) and a warning logged.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    kwargs = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(cfg.name_or_path, **kwargs)
    tokenizer_json = Path(cfg.name_or_path) / "tokenizer.json"
    if tokenizer_json.is_file() and not _matches_tokenizer_json(tokenizer, tokenizer_json):
        log.warning(
            "%s as loaded by AutoTokenizer (%s) encodes differently from %s; using the file as is",
            cfg.name_or_path, type(tokenizer).__name__, tokenizer_json,
        )
        tokenizer = PreTrainedTokenizerFast.from_pretrained(cfg.name_or_path, **kwargs)
        if not _matches_tokenizer_json(tokenizer, tokenizer_json):
            raise ValueError(f"cannot load the tokenizer of {cfg.name_or_path!r} faithfully from {tokenizer_json}")
    return configure_tokenizer(tokenizer, cfg.name_or_path)


# ---------------------------------------------------------------------------------------------------
# Model


def _dtype_kwarg() -> str:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56 (the old name warns in 5.x)."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _quantized_device_map() -> dict[str, int | str]:
    # bitsandbytes quantises while loading, onto the device named here; load straight onto the local GPU.
    if torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return {"": "cpu"}


def _from_pretrained(path: str, cfg: ModelConfig, *, quantized: bool) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        _dtype_kwarg(): cfg.torch_dtype if cfg.torch_dtype == "auto" else getattr(torch, cfg.torch_dtype),
        "revision": cfg.revision,
        "trust_remote_code": cfg.trust_remote_code,
        "attn_implementation": cfg.attn_implementation or "sdpa",
    }
    if quantized:
        kwargs["quantization_config"] = cfg.quant.to_bnb()
        kwargs["device_map"] = _quantized_device_map()
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def _linear4bit_modules(model: nn.Module) -> list[nn.Module]:
    try:
        import bitsandbytes as bnb
    except ImportError:  # no bitsandbytes: nothing can be 4-bit
        return []
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def is_4bit(model: nn.Module) -> bool:
    """True when ``model`` holds bitsandbytes 4-bit linear layers."""
    return bool(getattr(model, "is_loaded_in_4bit", False)) or bool(_linear4bit_modules(model))


def disable_cpu_weight_repacking(model: nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for AVX512-BF16 CPU inference; returns the number of
    ``Linear4bit`` layers touched.

    Sets ``support_avx512bf16_for_cpu = False`` on every ``bnb.nn.Linear4bit`` (where the attribute
    exists). A layer that was already repacked (an eval forward ran before this call) is converted back
    with bitsandbytes' inverse — best effort: its block scales were rounded to bfloat16 by the repacking,
    so a warning is logged; call this right after loading to avoid that.
    """
    layers = _linear4bit_modules(model)
    repacked = 0
    for layer in layers:
        if hasattr(layer, "support_avx512bf16_for_cpu"):
            layer.support_avx512bf16_for_cpu = False
        weight = layer.weight
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes import functional as bnb_f

            inverse = getattr(bnb_f, "_convert_weight_packed_for_cpu_inverse", None)
            if inverse is None:
                raise RuntimeError(
                    "a 4-bit layer was already repacked for CPU inference and this bitsandbytes version "
                    "cannot undo it; reload the model and prepare it before any eval-mode forward"
                )
            weight.data, weight.quant_state = inverse(weight.data, state)
            repacked += 1
    if repacked:
        log.warning(
            "%d 4-bit layers had been repacked for CPU inference before training was prepared; converted "
            "back (block scales now rounded to bfloat16)",
            repacked,
        )
    return len(layers)


def _requantize(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Quantise an in-memory model to 4 bits: bitsandbytes quantises while loading, so save the model to
    a temporary folder and reload it with the ``BitsAndBytesConfig`` (the folder is deleted after)."""
    name = getattr(model.config, "_name_or_path", "") or cfg.name_or_path
    with tempfile.TemporaryDirectory(prefix="rerec-qlora-", ignore_cleanup_errors=True) as tmp:
        model.save_pretrained(tmp)
        quantized = _from_pretrained(tmp, cfg, quantized=True)
    # Otherwise the adapter config would name the deleted temporary folder as its base model.
    quantized.config._name_or_path = name
    quantized.name_or_path = name
    return quantized


def _enable_gradient_checkpointing(model: nn.Module) -> None:
    kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen inputs, no input-grad hook needed
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _sync_special_tokens(model: nn.Module, tokenizer: Any) -> None:
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model's embedding has only {rows} rows; "
            "they do not belong together"
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id
        if gen.eos_token_id is None:
            gen.eos_token_id = tokenizer.eos_token_id


def prepare_policy(model: nn.Module, tokenizer: Any, cfg: ModelConfig) -> nn.Module:
    """Prepare a loaded or in-memory causal LM for RL training according to ``cfg.mode``.

    ``full``: every weight trainable (cast to ``cfg.torch_dtype`` unless ``"auto"``). ``lora``: base
    frozen, peft LoRA adapters added. ``qlora``: a model that is not 4-bit yet is quantised by a save and
    reload through a temporary folder (``cfg.quant``), then CPU repacking is disabled
    (:func:`disable_cpu_weight_repacking`), the base frozen with its non-quantised weights in float32,
    and LoRA adapters added. Gradient checkpointing (non-reentrant) when ``cfg.gradient_checkpointing``.
    The tokenizer is configured in place (:func:`configure_tokenizer`) and its pad token copied to the
    model's config and generation config.

    Args:
        model: a transformers ``PreTrainedModel`` (not yet wrapped by peft).
        tokenizer: its tokenizer.
        cfg: the settings.

    Returns:
        The model to train, in train mode: the same object (``full``), a ``PeftModel`` (``lora``), or a
        ``PeftModel`` around a new 4-bit model (``qlora``). Switch it to ``eval()`` for generation:
        in train mode gradient checkpointing turns the KV cache off (and LoRA dropout is active).
    """
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if isinstance(model, PeftModel):
        raise ValueError("prepare_policy got a model that already has peft adapters; pass the bare base model")
    configure_tokenizer(tokenizer, cfg.name_or_path)

    if cfg.mode == "qlora":
        if not is_4bit(model):
            model = _requantize(model, cfg)
        disable_cpu_weight_repacking(model)
        # Freezes the base and upcasts non-quantised weights to float32; checkpointing is enabled below.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        if is_4bit(model):
            raise ValueError(f"model is 4-bit quantised but mode is {cfg.mode!r}; use mode 'qlora'")
        if cfg.torch_dtype != "auto":
            model = model.to(getattr(torch, cfg.torch_dtype))
        model.requires_grad_(cfg.mode == "full")
    _sync_special_tokens(model, tokenizer)

    frozen: nn.Module | None = None
    if cfg.reference == "copy" or (cfg.reference == "auto" and cfg.mode == "full"):  # copy before any update
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(model)
    if cfg.mode != "full":
        with warnings.catch_warnings():  # peft reads a property that transformers 5 deprecated
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            model = get_peft_model(model, cfg.lora.to_peft())
    setattr(model, _REFERENCE_ATTR, _ReferenceSpec(cfg.reference, frozen))
    model.train()  # from_pretrained returns eval mode; callers switch to eval() for generation

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("policy %r prepared: mode=%s, %d / %d parameters trainable", cfg.name_or_path, cfg.mode, trainable, total)
    return model


def rebase_policy(model: nn.Module, tokenizer: Any, cfg: ModelConfig) -> nn.Module:
    """Make the policy's current weights its reference, after a warm start trained the prepared model.

    The reference for the KL term must be the policy RL starts from. ``full``: the frozen copy (when
    kept) is replaced by a copy of the current weights. ``lora``/``qlora``: the trained adapters are
    merged into the base (peft ``merge_and_unload``; a 4-bit base is re-quantised with them) and fresh
    adapters are added by :func:`prepare_policy`, so "adapters disabled" is the warm-started model.

    Returns:
        The model to train (the same object for ``full``, a new ``PeftModel`` otherwise).
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        spec = getattr(model, _REFERENCE_ATTR, None)
        if spec is not None and spec.frozen is not None:
            delattr(model, _REFERENCE_ATTR)  # so the copy does not copy the old reference along
            try:
                spec.frozen = copy.deepcopy(model).eval().requires_grad_(False)
            finally:
                setattr(model, _REFERENCE_ATTR, spec)
        return model
    base = model.merge_and_unload()
    if hasattr(base, _REFERENCE_ATTR):
        delattr(base, _REFERENCE_ATTR)
    return prepare_policy(base, tokenizer, cfg)


def load_policy(cfg: ModelConfig) -> tuple[nn.Module, Any]:
    """Load ``cfg.name_or_path`` (hub name or folder) and its tokenizer, prepared for training.

    Returns:
        ``(model, tokenizer)``: see :func:`prepare_policy` for the model; the tokenizer pads on the left.
    """
    if cfg.name_or_path.endswith(".gguf") and Path(cfg.name_or_path).is_file():
        from dataclasses import replace

        from rerec.gguf_import import import_for_path

        folder = import_for_path(cfg.name_or_path)  # once; later runs find the folder by the file's digest
        log.info("model.name_or_path %s is a GGUF file: loading its imported folder %s", cfg.name_or_path, folder)
        return load_policy(replace(cfg, name_or_path=str(folder)))
    hub = not Path(cfg.name_or_path).exists()
    if hub and cfg.revision is None:
        log.warning(
            "model %r is a Hugging Face hub name without model.revision: the run uses whatever the default "
            "branch holds when it is downloaded; pin model.revision to a commit hash for a reproducible run",
            cfg.name_or_path,
        )
    try:
        tokenizer = load_tokenizer(cfg)
        model = _from_pretrained(cfg.name_or_path, cfg, quantized=cfg.mode == "qlora")
    except OSError as error:
        if not (hub and _hub_offline()):
            raise
        revision = f" --revision {cfg.revision}" if cfg.revision else ""
        raise OSError(
            f"model {cfg.name_or_path!r} (revision {cfg.revision or 'default branch'}) is not in the local Hugging "
            f"Face cache and HF_HUB_OFFLINE=1 forbids downloading it: download it first (`huggingface-cli download "
            f"{cfg.name_or_path}{revision}`) or give model.name_or_path a local folder"
        ) from error
    return prepare_policy(model, tokenizer, cfg), tokenizer


def _hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("TRANSFORMERS_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


# ---------------------------------------------------------------------------------------------------
# Reference policy


@contextmanager
def reference_policy(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager yielding the module that computes reference log-probs; call the YIELDED module.

    ``with reference_policy(model) as ref: logits = ref(input_ids=..., attention_mask=...).logits``

    - LoRA / QLoRA (``reference="auto"``): yields ``model`` itself with its adapters disabled — no
      second copy; the adapters are re-enabled on exit, even on error.
    - ``reference="copy"`` (full fine-tuning): yields the frozen copy of the initial weights, moved to
      the policy's device on first use.
    - Gradients are disabled inside the block (the reference is never trained). Train/eval mode is left
      as the caller set it.

    Raises:
        RuntimeError: ``reference="none"``, or full fine-tuning without a kept copy.
    """
    from peft import PeftModel

    spec = getattr(model, _REFERENCE_ATTR, None) or _ReferenceSpec("auto")
    if spec.kind == "none":
        raise RuntimeError(
            "no reference policy: the model was prepared with reference='none'; set beta=0 (no KL term) or "
            "prepare it with reference='auto' (LoRA/QLoRA) or 'copy' (full fine-tuning)"
        )
    if spec.frozen is not None:
        device = next(model.parameters()).device
        if next(spec.frozen.parameters()).device != device:
            spec.frozen.to(device)
        with torch.no_grad():
            yield spec.frozen
        return
    if isinstance(model, PeftModel):
        with torch.no_grad(), model.disable_adapter():
            yield model
        return
    raise RuntimeError(
        "full fine-tuning has no adapters to disable, so there is no reference policy; prepare the model "
        "with model.reference='copy' (keeps a frozen copy: twice the weight memory) or train with beta=0 "
        "and model.reference='none'"
    )


# ---------------------------------------------------------------------------------------------------
# Export


def export_adapter(model: nn.Module, out_dir: str | os.PathLike[str], tokenizer: Any = None) -> Path:
    """Write the peft adapter (``adapter_config.json`` + ``adapter_model.safetensors``), and the tokenizer
    when given, to ``out_dir`` atomically; load it back with ``PeftModel.from_pretrained(base, out_dir)``.

    Raises:
        TypeError: ``model`` is not a ``PeftModel`` (full fine-tuning: use :func:`export_pretrained`).
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise TypeError(
            f"export_adapter needs a peft model (mode 'lora' or 'qlora'), got {type(model).__name__}; "
            "for full fine-tuning use export_pretrained"
        )
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)  # safetensors is the default format
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def export_pretrained(model: nn.Module, out_dir: str | os.PathLike[str], tokenizer: Any = None) -> Path:
    """Write a fully fine-tuned transformers model (``save_pretrained``, safetensors), and the tokenizer
    when given, to ``out_dir`` atomically.

    Raises:
        TypeError: ``model`` is a ``PeftModel`` (use :func:`export_adapter`).
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        raise TypeError("export_pretrained got a peft model; export its adapter with export_adapter")
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)  # safetensors is the default format
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out_dir)
