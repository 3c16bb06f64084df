"""Progress bars for the long parts Lightning's bar does not cover: the warm start, the held-out
evaluations before and after RL, and the inline LightGCN.

Bars are drawn only where a person watches: on an interactive terminal, never in CI (``CI`` set) or in
a log file. ``REREC_PROGRESS=1`` forces them on, ``REREC_PROGRESS=0`` off. The CLI applies the same rule
to Lightning's own bar (``trainer.enable_progress_bar``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_enabled", "progress"]


def progress_enabled() -> bool:
    """Whether to draw progress bars (see the module docstring)."""
    forced = os.environ.get("REREC_PROGRESS", "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    if os.environ.get("CI"):
        return False
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress(iterable: Iterable[Any] | None = None, total: int | None = None, desc: str | None = None,
             unit: str = "it") -> Any:
    """A ``tqdm`` bar over ``iterable`` (or a manual one with ``total``), silent when
    :func:`progress_enabled` is False; it disappears when done (``leave=False``)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                disable=not progress_enabled())
