"""Stop requests by signal: the first SIGTERM or SIGINT asks for a clean stop, a second one ends the
process at once.

Plain Python (no torch, no Lightning), so that the behaviour can be checked in a bare process; the
Lightning side is :class:`rerec.rl.interrupt.GracefulStop`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "StopSignals", "exit_code"]

log = logging.getLogger("rerec.signals")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code(signum: int) -> int:
    """The shell's exit status of a process ended by ``signum`` (143 for SIGTERM, 130 for SIGINT)."""
    return 128 + int(signum)


class StopSignals:
    """Handlers for :data:`STOP_SIGNALS` that record a stop request.

    The first signal sets :attr:`signum` and calls ``on_first(signum, frame)`` (e.g. Lightning's own
    SIGTERM handler, which makes the training loop stop after the current step); the work in progress is
    expected to finish and stop cleanly. A second signal restores the default action and re-sends
    itself: the process ends at once, killed by that signal.

    Args:
        on_first: Called on the first signal (in the main thread, between two Python bytecodes).
    """

    def __init__(self, on_first: Callable[[int, FrameType | None], Any] | None = None) -> None:
        self.on_first = on_first
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self.signum is not None

    def install(self) -> bool:
        """Install the handlers (only possible in the main thread); returns whether they were."""
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: SIGTERM/SIGINT keep their handlers (no clean stop)")
            return False
        for signum in STOP_SIGNALS:
            self._previous.setdefault(signum, signal.getsignal(signum))
            signal.signal(signum, self._handle)
        return True

    def restore(self) -> None:
        """Put back the handlers found by :meth:`install`, where ours is still the one installed."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            log.warning("second stop signal (%s): exiting at once, without a checkpoint", name)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            os._exit(exit_code(signum))  # only if the default action did not end the process
        self.signum = signum
        log.warning("%s received: finishing the current step, then writing a checkpoint and stopping "
                    "(send it again to exit at once)", name)
        if self.on_first is not None:
            self.on_first(signum, frame)
