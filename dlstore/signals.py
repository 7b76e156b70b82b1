"""Signals as bytes on a pipe, read by the thread that waits for them.

A Python signal handler runs on the main thread between two bytecodes, so one that
arrives while that thread is inside a blocking call (a database waiting for a lock)
waits for the call to return; and a handler that takes a lock (setting an Event,
logging) can deadlock against the code it interrupted. So the handlers here do
nothing: ``signal.set_wakeup_fd`` has the interpreter write each signal's number to
a pipe the moment it arrives, and :meth:`SignalPipe.wait` (a ``select`` on that
pipe) hands the numbers to ordinary code. :meth:`SignalPipe.poke` wakes the waiter
from any thread, without a signal.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterable
from types import FrameType

#: What :meth:`SignalPipe.poke` writes: no signal has the number 0.
_POKE = 0


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: the wake-up fd carries the signal."""


class SignalPipe:
    """A pipe that signals (once :meth:`install` ran) and :meth:`poke` write to."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous_fd: int | None = None
        self._previous_handlers: dict[int, object] = {}

    def install(self, signums: Iterable[int]) -> None:
        """Deliver ``signums`` through the pipe. Main thread only (as ``signal.signal``)."""
        for signum in signums:
            self._previous_handlers[signum] = signal.signal(signum, _ignore)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def poke(self) -> None:
        """Wake :meth:`wait` (from any thread)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write, bytes([_POKE]))

    def wait(self, timeout: float) -> list[int]:
        """Wait up to ``timeout`` seconds for a signal or a poke; the signals that came."""
        try:
            ready, _, _ = select.select([self._read], [], [], max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            ready = [self._read]
        if not ready:
            return []
        try:
            data = os.read(self._read, 512)
        except BlockingIOError:
            return []
        return [number for number in data if number != _POKE]

    def close(self) -> None:
        """Put back the handlers and wake-up fd :meth:`install` replaced; close the pipe."""
        if self._previous_fd is not None:
            with contextlib.suppress(ValueError):  # not the main thread: leave them
                signal.set_wakeup_fd(self._previous_fd)
                for signum, handler in self._previous_handlers.items():
                    signal.signal(signum, handler)  # type: ignore[arg-type]
            self._previous_fd = None
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
