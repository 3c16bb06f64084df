"""``neutral_context``: what Lightning's contexts set is undone inside, and restored after."""

from __future__ import annotations

import pytest
import torch

from rerec.rl.torch_context import default_dtype, neutral_context


def test_neutral_context_undoes_a_default_device_dtype_and_autocast_and_restores_them() -> None:
    with torch.device("meta"), default_dtype(torch.bfloat16), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.zeros(1).device.type == "meta"
        with neutral_context():
            t = torch.zeros(2)
            assert (t.device.type, t.dtype) == ("cpu", torch.float32)
            assert not torch.is_autocast_enabled("cpu")
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
        assert torch.zeros(1).device.type == "meta" and torch.zeros(1).dtype == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    assert torch.zeros(1).device.type == "cpu" and torch.get_default_dtype() == torch.float32


def test_neutral_context_restores_nested_default_devices_and_survives_an_error() -> None:
    torch.set_default_device("meta")
    try:
        with torch.device("cpu"):
            with pytest.raises(RuntimeError, match="boom"), neutral_context():
                assert torch.zeros(1).device.type == "cpu"
                raise RuntimeError("boom")
            assert torch.zeros(1).device.type == "cpu"  # the inner one is back on top
        assert torch.zeros(1).device.type == "meta"  # and the global one under it
    finally:
        torch.set_default_device(None)
    assert torch.zeros(1).device.type == "cpu"
