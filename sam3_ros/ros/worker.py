"""The inference thread: runs NodeCore's steps, hands their outputs to a publisher.

rclpy-free. The node passes in ``publish`` and ``context_ok``. When the ROS context goes away
under a frame (Ctrl-C, shutdown), the thread ends quietly instead of failing on a publish.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

ERROR_LOG_PERIOD_S = 5.0


class InferenceWorker:
    def __init__(self, process_next: Callable[..., Any], publish: Callable[[Any], None],
                 context_ok: Callable[[], bool] = lambda: True, poll_s: float = 0.1):
        self._process_next = process_next
        self._publish = publish
        self._context_ok = context_ok
        self._poll_s = poll_s
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log = -1e9
        self.errors = 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.alive:
            return
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="sam3-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop after the frame in flight; True when the thread has ended."""
        self._running.clear()
        thread, self._thread = self._thread, None
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def _run(self) -> None:
        while self._running.is_set() and self._context_ok():
            try:
                outputs = self._process_next(timeout_s=self._poll_s)
                if outputs is not None and self._running.is_set():
                    self._publish(outputs)
            except Exception as err:  # a frame must never kill the thread
                if not self._context_ok():
                    return  # shutting down: the publishers' context is gone
                self._report(err)

    def _report(self, err: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_PERIOD_S:
            self._last_error_log = now
            log.error("frame processing failed (%d so far): %s: %s", self.errors, type(err).__name__, err)
