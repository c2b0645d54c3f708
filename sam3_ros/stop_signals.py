"""SIGINT (Ctrl-C) and SIGTERM (``timeout``, systemd, Docker) as a clean stop for ``sam3-ros``.

Python's default SIGTERM kills the process where it stands: results.json cut mid-frame, an MCAP
bag without its summary, an mp4 without its index. ``StopSignals`` turns both signals into
``Interrupted`` (a KeyboardInterrupt), so every ``with`` block closes its files on the way out.
Inside ``deferred()`` (while a runner writes frames) the first signal only sets a flag, and
``check()`` raises it between frames, so no file is left in the middle of a record; a second
signal raises at once.
"""
from __future__ import annotations

import contextlib
import signal
import sys
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal; ``str()`` names it, ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """The process's SIGINT and SIGTERM handler; install it from the main thread.

    Attributes: ``received``, the first signal number received (None before any).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._deferring = 0

    def install(self) -> "StopSignals":
        """(Re)install the handler: libraries such as Ray replace the SIGTERM handler when they start."""
        for signum in SIGNALS:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if first and self._deferring:
            print(f"{signal.Signals(signum).name}: stopping after the current frame "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)
            return
        raise Interrupted(self.received)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """The first signal inside this block waits for ``check()`` (work that ends first just ends)."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal came; call it where stopping leaves every file whole."""
        if self.received is not None:
            raise Interrupted(self.received)
