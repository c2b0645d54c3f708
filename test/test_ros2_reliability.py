"""Reliability of the running node over real DDS: fuzzed input in batches, a short soak, faults.

The long version (2,000+ cases, 10,000 frames) is benchmarks/reliability_soak.py; figures in
docs/reliability.md. The crashes fuzzing found are fixed in NodeCore and guarded rclpy-free in
test_reliability_core.py; their shrunk cases are replayed here first, over DDS.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ros_runtime import SKIP_REASON, RosClient

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

import fuzz_cases as fz  # noqa: E402
from reliability_drive import FuzzTarget, soak, stamp_of  # noqa: E402
from sam3_ros_interfaces import srv  # noqa: E402
from sam3_ros_interfaces.msg import Concept  # noqa: E402

BATCH = 25
CI_CASES = 300
CI_SOAK_FRAMES = 1000


@pytest.fixture(scope="module")
def client():
    client = RosClient("sam3_reliability_client")
    yield client
    client.close()


@pytest.fixture(scope="module")
def raw(client):
    """A node with image + camera info + depth."""
    target = FuzzTarget(client, "sam3_fuzz")
    target.bring_up()
    yield target
    assert target.process.alive, target.process.output()[-3000:]
    assert target.close() == 0


@pytest.fixture(scope="module")
def compressed(client):
    target = FuzzTarget(client, "sam3_fuzzc", compressed=True)
    target.bring_up()
    yield target
    assert target.close() == 0


def run_batches(target: FuzzTarget, cases: list[fz.Case]) -> dict:
    values = {}
    for start in range(0, len(cases), BATCH):
        for case in cases[start:start + BATCH]:
            target.send(case)
        values = target.check_alive_and_working(start)
    return values


def test_regression_cases_over_dds(raw):
    for case in fz.REGRESSIONS.values():
        answer = raw.send(case)
        if case.kind == "set_concepts":
            assert not answer.success and "at most" in answer.message
    values = raw.check_alive_and_working(0)
    assert int(values["failed frames"]) == 0


def test_fuzzed_camera_and_service_input_in_batches(raw):
    """Every category but compressed images; the node stays active, answers a valid frame after
    each batch and accounts for every frame it received; what it dropped is logged."""
    categories = tuple(c for c in fz.CAMERA_CATEGORIES + fz.SERVICE_CATEGORIES if c != "compressed")
    values = run_batches(raw, fz.cases(seed=11, count=CI_CASES, categories=categories))
    assert int(values["bad images"]) > 0
    assert "dropping image" in raw.process.output()
    assert int(values["frames received"]) <= raw.camera_sent


def test_fuzzed_compressed_images_in_batches(compressed):
    values = run_batches(compressed, fz.cases(seed=12, count=100, categories=("compressed",)))
    assert int(values["bad images"]) > 0
    assert "dropping image" in compressed.process.output()


def test_soak_ids_increase_stamps_match_rss_flat(raw):
    result = soak(raw, CI_SOAK_FRAMES, reset_every=200)
    assert result.lost == 0 and result.stamp_mismatches == 0 and result.frames == CI_SOAK_FRAMES
    assert result.id_order_violations == 0 and result.track_ids > result.resets
    assert result.rss_growth(from_frame=300) <= 0.10, result.rss_kib


# -- faults ----------------------------------------------------------------------------------------------


def test_100_concurrent_service_calls_while_frames_are_processed(raw):
    """Bursts beyond ROS 2's default service queue of 10 used to go unanswered."""
    stop, published = False, []

    def call(i: int):
        service, srv_type, fields = [
            ("add_concept", srv.AddConcept, dict(concept=Concept(id=f"c{i}", text=f"thing {i}"), replace=True)),
            ("list_concepts", srv.ListConcepts, {}),
            ("reset_tracks", srv.ResetTracks, {}),
            ("remove_concept", srv.RemoveConcept, dict(id=f"c{i - 3}")),  # added three calls earlier
            ("refine_track", srv.RefineTrack, dict(track_id=10**6, use_box=True)),
        ][i % 5]
        return service, raw.client.call_async(srv_type, f"{raw.name}/{service}", srv_type.Request(**fields))

    def camera():
        index = 0
        while not stop:
            raw.publish_camera(fz.camera_case("valid", (2_100_000_000 + index, 0), image=fz.valid_image_fields(index)))
            published.append((2_100_000_000 + index, 0))
            index += 1
            time.sleep(0.05)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(camera)
        try:
            futures = [call(i) for i in range(100)]
            answers = [(kind, raw.client.result(f, 120.0, kind)) for kind, f in futures]
        finally:
            stop = True
        running.result()
    assert len(answers) == 100
    assert all(a.success for kind, a in answers if kind in ("add_concept", "list_concepts", "reset_tracks"))
    assert not any(a.success for kind, a in answers if kind == "refine_track")
    assert all(a.message for _, a in answers)
    assert raw.outputs.wait_for(lambda m: stamp_of(m) in published, 30.0)
    raw.check_alive_and_working(10_000)


def test_lifecycle_transitions_while_a_frame_is_in_flight(raw):
    for cycle in range(3):
        raw.publish_camera(fz.camera_case("valid", (2_110_000_000 + cycle, 0), image=fz.valid_image_fields(cycle)))
        time.sleep(0.02)  # the frame is in the model when deactivate arrives
        assert raw.client.transition(raw.name, "deactivate")
        assert raw.client.state(raw.name) == "inactive"
        assert raw.client.transition(raw.name, "activate")
    raw.check_alive_and_working(20_000)


def test_camera_silence_warns_then_recovers_without_restart(client):
    target = FuzzTarget(client, "sam3_silence", camera_timeout_s=1.0)
    try:
        target.bring_up()
        pid = target.process.process.pid
        target.valid_frame(0, (2_120_000_000, 0))

        def level(predicate):
            node = target.name.lstrip("/")
            target.diagnostics.clear()
            message = target.diagnostics.wait_for(lambda m: any(s.hardware_id.endswith(node) and predicate(s)
                                                                for s in m.status), 20.0)
            return next(s for s in message.status if s.hardware_id.endswith(node))
        as_int = lambda s: s.level[0] if isinstance(s.level, bytes) else int(s.level)  # noqa: E731
        warned = level(lambda s: as_int(s) == 1)
        assert "no image" in warned.message
        for i in range(1, 4):
            target.valid_frame(i, (2_120_000_000 + i, 0))
        level(lambda s: as_int(s) == 0)
        assert target.process.process.pid == pid and target.process.alive
        assert client.state(target.name) == "active"
    finally:
        target.close()


def test_bag_loop_resets_tracks_and_ids_keep_counting(raw):
    first = [raw.valid_frame(i, (2_130_000_000 + i, 0)) for i in range(6)]
    before = max((int(i.track_id) for m in first for i in m.instances), default=0)
    restarts = int(raw.counters()["camera restarts (stamps went backwards)"])
    looped = [raw.valid_frame(i, (2_130_000_000 + i, 500)) for i in range(6)]  # back to the loop's start
    after = [int(i.track_id) for m in looped for i in m.instances]
    assert int(raw.counters()["camera restarts (stamps went backwards)"]) == restarts + 1
    assert after and min(after) > before


def test_corrupt_checkpoint_fails_configure_with_the_reason_then_a_fix_configures(client, tmp_path):
    checkpoint = tmp_path / "sam3"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"model_type": "sam3_video", ')  # cut short
    (checkpoint / "model.safetensors").write_bytes(b"\x00" * 100)
    target = FuzzTarget(client, "sam3_corrupt", **{"model.tiny": False, "model.checkpoint": str(checkpoint)})
    try:
        assert not client.transition(target.name, "configure")
        assert target.process.alive and client.state(target.name) == "unconfigured"
        values = target.counters()
        assert str(checkpoint) in values["model"] or "config.json" in values["model"], values["model"]
        assert all(r.successful for r in client.set_parameters(target.name, {"model.tiny": True, "model.checkpoint": ""}))
        target.bring_up()
        target.valid_frame(0, (2_140_000_000, 0))
    finally:
        target.close()
