"""The process's global random states (torch CPU, every initialised accelerator, NumPy, Python), as plain
data a checkpoint can carry, so that a resumed run draws the same random numbers as the run it continues.

:class:`~rerec.rl.module.ReRecPolicy` captures the states at the end of every RL step and puts them back
at the start of the next one, so a step's rollouts (sampling) and update (mini-batch shuffles) depend only
on the states its predecessor left, never on what ran in between (data-loader seeds at an epoch start,
validation): a run resumed from the checkpoint of step S then repeats steps S+1, S+2, ... exactly.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def _accelerators() -> dict[str, Any]:
    """Accelerator modules whose random state is in use (an uninitialised one has drawn nothing)."""
    found: dict[str, Any] = {}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        found["cuda"] = torch.cuda
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available() and getattr(xpu, "is_initialized", lambda: True)():
        found["xpu"] = xpu
    if torch.backends.mps.is_available():
        found["mps"] = torch.mps
    return found


def capture_rng_state() -> dict[str, Any]:
    """The global random states of this process: ``torch`` (CPU), one entry per accelerator in use
    (every device of it), ``numpy`` and ``python``; tensors, lists and numbers only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    for name, module in _accelerators().items():
        state[name] = [module.get_rng_state()] if name == "mps" else module.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back states from :func:`capture_rng_state`. An accelerator in the state but not available here
    raises: its draws could not be repeated."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for name in ("cuda", "xpu", "mps"):
        if name not in state:
            continue
        module = getattr(torch, name, None)
        available = module is not None and (
            torch.backends.mps.is_available() if name == "mps" else module.is_available()
        )
        if not available:
            raise RuntimeError(f"the saved random state includes {name!r}, which this process does not have: "
                               f"resume on the same kind of accelerator")
        if name == "mps":
            module.set_rng_state(state[name][0])
        else:
            module.set_rng_state_all(state[name])
