"""The node's rclpy-free logic: inference worker, transition guard, stamp pairing, parameter checks."""
from __future__ import annotations

import threading
import time

import pytest

from sam3_ros.ros.lifecycle import transition_refusal
from sam3_ros.ros.params import all_parameters, parameter_change_refusal
from sam3_ros.ros.stamp_sync import StampSynchronizer
from sam3_ros.ros.worker import InferenceWorker

# -- inference worker ----------------------------------------------------------------------------------


class FrameSource:
    """Hands out numbered frames, then nothing."""

    def __init__(self, frames: int):
        self.left = frames
        self.lock = threading.Lock()

    def __call__(self, timeout_s: float):
        with self.lock:
            if self.left == 0:
                time.sleep(timeout_s / 10)
                return None
            self.left -= 1
            return self.left


def wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_worker_publishes_every_frame_and_stops():
    published = []
    worker = InferenceWorker(FrameSource(5), published.append, poll_s=0.01)
    worker.start()
    wait_until(lambda: len(published) == 5)
    assert worker.stop(timeout_s=2.0) and not worker.alive
    assert sorted(published) == [0, 1, 2, 3, 4]


def test_worker_ends_quietly_when_the_context_goes_away_under_a_publish(caplog):
    context = {"ok": True}

    def publish(_):
        context["ok"] = False  # rclpy's SIGINT handler shut the context down mid-frame
        raise RuntimeError("Failed to publish: publisher's context is invalid")

    worker = InferenceWorker(FrameSource(3), publish, context_ok=lambda: context["ok"], poll_s=0.01)
    worker.start()
    wait_until(lambda: not worker.alive)
    assert worker.errors == 0
    assert "frame processing failed" not in caplog.text


def test_worker_survives_failing_frames_and_publishes_and_counts_them(caplog):
    published = []
    calls = {"n": 0}

    def flaky(timeout_s):
        calls["n"] += 1
        if calls["n"] in (1, 3):
            raise ValueError("corrupt frame")
        return calls["n"] if calls["n"] < 6 else None

    def publish(outputs):
        if outputs == 4:
            raise RuntimeError("publisher full")
        published.append(outputs)

    worker = InferenceWorker(flaky, publish, poll_s=0.01)
    worker.start()
    wait_until(lambda: calls["n"] >= 6)
    worker.stop()
    assert published == [2, 5]
    assert worker.errors == 3
    assert "corrupt frame" in caplog.text  # the first failure is logged (then throttled)


def test_worker_stop_waits_for_the_frame_in_flight():
    started, finished = threading.Event(), threading.Event()

    def slow(timeout_s):
        started.set()
        time.sleep(0.3)
        finished.set()
        return None

    worker = InferenceWorker(slow, lambda _: None, poll_s=0.01)
    worker.start()
    started.wait(2.0)
    assert worker.stop(timeout_s=5.0)
    assert finished.is_set()


# -- lifecycle requests ---------------------------------------------------------------------------------

ACTIVE = [(4, "deactivate"), (7, "shutdown")]


def test_transitions_valid_now_pass_by_label_or_id():
    assert transition_refusal(ACTIVE, 0, "deactivate", "active") is None
    assert transition_refusal(ACTIVE, 4, "", "active") is None


@pytest.mark.parametrize("transition_id, label", [(3, ""), (99, ""), (0, "activate"), (4, "no_such")])
def test_transitions_not_valid_now_are_refused_with_what_is_valid(transition_id, label):
    refusal = transition_refusal(ACTIVE, transition_id, label, "active")
    assert refusal is not None
    assert "'active'" in refusal and "deactivate (4)" in refusal and "shutdown (7)" in refusal


# -- pairing image, camera info and depth ------------------------------------------------------------------

MS = 1_000_000


def collecting_sync(inputs: int, slop_ms: float = 5, queue: int = 5):
    matches = []
    return StampSynchronizer(inputs, int(slop_ms * MS), queue, lambda *m: matches.append(m)), matches


def test_messages_with_one_stamp_pair_up_in_any_arrival_order():
    sync, matches = collecting_sync(3)
    sync.add(2, 100 * MS, "depth@100")
    sync.add(0, 100 * MS, "image@100")
    assert matches == []
    sync.add(1, 100 * MS, "info@100")
    assert matches == [("image@100", "info@100", "depth@100")]


def test_stamps_within_the_slop_pair_and_beyond_it_do_not():
    sync, matches = collecting_sync(2, slop_ms=5)
    sync.add(0, 100 * MS, "image@100")
    sync.add(1, 106 * MS, "info@106")
    assert matches == []
    sync.add(1, 104 * MS, "info@104")
    assert matches == [("image@100", "info@104")]


def test_the_newest_complete_frame_wins_and_older_ones_are_dropped():
    sync, matches = collecting_sync(2)
    for t in (100, 200, 300):
        sync.add(0, t * MS, f"image@{t}")
    sync.add(1, 200 * MS, "info@200")
    sync.add(1, 100 * MS, "info@100")  # late partner of an image that was already passed over
    assert matches == [("image@200", "info@200")]
    sync.add(1, 300 * MS, "info@300")
    assert matches[-1] == ("image@300", "info@300")
    assert sync.matched == 2


def test_queues_are_bounded():
    sync, matches = collecting_sync(2, queue=3)
    for t in range(100):
        sync.add(0, t * 1000 * MS, t)  # an image stream whose camera info never comes
    assert len(sync._queues[0]) == 3 and matches == []


def test_images_that_never_pair_are_counted():
    sync, matches = collecting_sync(2, queue=3)
    for t in (100, 200, 300, 400, 500):
        sync.add(0, t * MS, f"image@{t}")
    assert sync.unpaired_images == 2  # pushed out of the queue of 3
    sync.add(1, 500 * MS, "info@500")
    assert matches == [("image@500", "info@500")]
    assert sync.unpaired_images == 4  # the three queued images were passed over for the newest


def test_synchronizer_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        StampSynchronizer(0, 0, 5, print)
    with pytest.raises(ValueError):
        StampSynchronizer(2, -1, 5, print)


# -- parameters set at run time ---------------------------------------------------------------------------

DEFAULTS = {name: default for name, (default, _) in all_parameters().items()}


def test_valid_parameter_changes_are_accepted():
    assert parameter_change_refusal(DEFAULTS, {"reliability": "reliable", "model.tiny": True,
                                               "prompts": ["red cup"], "detection.score_threshold": 0.3}) is None


@pytest.mark.parametrize("changes, says", [
    ({"reliability": "sometimes"}, "reliability"),
    ({"image_topic": ""}, "image_topic"),
    ({"no_such_parameter": 1}, "no_such_parameter"),
    ({"detection.score_threshold": "high"}, "detection.score_threshold"),
])
def test_invalid_parameter_changes_are_refused_with_the_reason(changes, says):
    refusal = parameter_change_refusal(DEFAULTS, changes)
    assert refusal is not None and says in refusal
