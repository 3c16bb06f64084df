"""Peak memory of this process, for ``summary.json`` and the step log.

The number users compare between runs and trainers is the high-water mark, not the current use: the
CPU's peak resident set size (what an out-of-memory kill looks at) and, on a GPU, the caching allocator's
peak of allocated and of reserved bytes (reserved is what ``nvidia-smi`` shows and what runs out).
"""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["peak_memory"]

_GB = 1024**3


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def peak_memory(device: torch.device | str | None = None) -> dict[str, float]:
    """Peak memory in GiB: ``cpu_rss_gb`` always; ``gpu_allocated_gb`` and ``gpu_reserved_gb`` when
    ``device`` is a CUDA device (peaks since the process started or the last
    ``torch.cuda.reset_peak_memory_stats``)."""
    out = {"cpu_rss_gb": peak_rss_bytes() / _GB}
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        out["gpu_allocated_gb"] = torch.cuda.max_memory_allocated(device) / _GB
        out["gpu_reserved_gb"] = torch.cuda.max_memory_reserved(device) / _GB
    return out
