"""Pairs an image with its camera info and depth by stamp (rclpy-free; replaces message_filters).

Each input keeps a short queue. When a message arrives, the newest image that has a partner
within ``slop_ns`` on every other input is emitted with those partners. Everything up to the
matched messages (in arrival order, not stamp order: after a stamp jump back, a frame arriving
with an older stamp is kept) is then dropped: the node works on the latest frame only.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable


class StampSynchronizer:
    def __init__(self, inputs: int, slop_ns: int, queue_size: int, on_match: Callable[..., None]):
        if inputs < 1 or queue_size < 1 or slop_ns < 0:
            raise ValueError("need at least one input, a queue of at least 1 and a slop >= 0")
        self._queues: list[deque] = [deque(maxlen=queue_size) for _ in range(inputs)]
        self._slop_ns = slop_ns
        self._on_match = on_match
        self._lock = threading.Lock()
        self.matched = 0
        self.images_received = 0
        self._arrivals = 0

    def add(self, index: int, stamp_ns: int, message: Any) -> None:
        """Input ``index`` (0 = the image) received ``message`` stamped ``stamp_ns``."""
        with self._lock:
            self._arrivals += 1
            self.images_received += index == 0
            self._queues[index].append((stamp_ns, message, self._arrivals))
            match = self._newest_match()
        if match is not None:
            self._on_match(*match)

    @property
    def unpaired_images(self) -> int:
        """Images dropped without ever finding partners (passed over or pushed out of the queue)."""
        with self._lock:
            return self.images_received - self.matched - len(self._queues[0])

    def callback(self, index: int, stamp_of: Callable[[Any], int]) -> Callable[[Any], None]:
        """A subscription callback feeding input ``index``."""
        return lambda message: self.add(index, stamp_of(message), message)

    def _newest_match(self) -> tuple | None:
        images, others = self._queues[0], self._queues[1:]
        for image_stamp, image, images_arrival in reversed(images):
            partners = [_nearest(queue, image_stamp, self._slop_ns) for queue in others]
            if all(p is not None for p in partners):
                self._drop_through([images_arrival, *(p[2] for p in partners)])
                self.matched += 1
                return (image, *(p[1] for p in partners))
        return None

    def _drop_through(self, arrivals: list[int]) -> None:
        for queue, arrival in zip(self._queues, arrivals):
            while queue and queue[0][2] <= arrival:
                queue.popleft()


def _nearest(queue: deque, stamp_ns: int, slop_ns: int) -> tuple[int, Any, int] | None:
    best = min(queue, key=lambda item: abs(item[0] - stamp_ns), default=None)
    return best if best is not None and abs(best[0] - stamp_ns) <= slop_ns else None
