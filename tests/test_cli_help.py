"""The command is named ``rerec``, and its top-level help answers without importing Lightning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}


def test_top_level_help_is_light() -> None:
    code = "import sys; from rerec.cli import main; main(['--help']); print('heavy', 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: rerec ") and "fit" in out and "heavy False" in out
    done = subprocess.run([sys.executable, "-m", "rerec", "--help"], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: rerec ")


def test_subcommand_help_names_rerec_and_the_wandb_option() -> None:
    done = subprocess.run([sys.executable, "-m", "rerec", "fit", "--help"], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.startswith("usage: rerec ") and "__main__" not in done.stdout
    assert "--wandb.enabled" in done.stdout and "--wandb.log_adapters" in done.stdout
