"""Torch's thread-wide defaults, set aside where code must not inherit Lightning's.

Lightning runs ``configure_model`` under ``with torch.device(root_device)`` and, with ``bf16-true`` /
``16-true``, a half-precision default dtype; it runs every training step under that default dtype
(``*-true``) or under autocast (``*-mixed``). Code that owns its model and its buffers — vLLM above all,
which creates pinned CPU buffers with no device (they would land on the GPU and fail: "Only dense CPU
tensors can be pinned") and its constants in the default dtype — must run as in a plain script:
:func:`neutral_context`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch

__all__ = ["default_dtype", "neutral_context"]


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """``torch.set_default_dtype(dtype)`` inside the block, the previous default restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextmanager
def neutral_context() -> Iterator[None]:
    """Default dtype float32, no default device (factory calls without ``device`` make CPU tensors) and
    autocast off, whatever the caller set; everything restored on exit, even on error.

    A default device (``with torch.device(...)``, ``torch.set_default_device``) is a ``DeviceContext``
    on torch's function-mode stack: the stack is set aside for the block, less those, and put back after.
    """
    from torch._C import _len_torch_function_stack
    from torch.overrides import _pop_mode, _push_mode
    from torch.utils._device import DeviceContext

    saved = [_pop_mode() for _ in range(_len_torch_function_stack())][::-1]  # bottom first
    for mode in saved:
        if not isinstance(mode, DeviceContext):
            _push_mode(mode)
    try:
        with ExitStack() as stack:
            stack.enter_context(default_dtype(torch.float32))
            stack.enter_context(torch.autocast("cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast("cuda", enabled=False))
            yield
    finally:
        for _ in range(_len_torch_function_stack()):
            _pop_mode()
        for mode in saved:
            _push_mode(mode)
