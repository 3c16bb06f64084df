"""Peak memory of the process: a high-water mark in GiB that grows with a big allocation and never
falls."""

from __future__ import annotations

import torch

from rerec.rl.peak_memory import peak_memory


def test_peak_rss_is_a_high_water_mark() -> None:
    before = peak_memory("cpu")
    assert set(before) == {"cpu_rss_gb"} and before["cpu_rss_gb"] > 0.01
    big = torch.ones(64 * 1024**2 // 4)  # 64 MiB, touched
    during = peak_memory()["cpu_rss_gb"]
    del big
    after = peak_memory()["cpu_rss_gb"]
    assert during >= before["cpu_rss_gb"] and after >= during
