"""launch_testing: the real sam3 node, started by launch/sam3.launch.py (autostart) with the tiny
random-init model on the CPU, fed a synthetic camera (rgb8 image, CameraInfo and 32FC1 depth with
one stamp). Every service is called and every output topic is checked.

Needs a sourced ROS 2 workspace with sam3_ros and sam3_ros_interfaces built, and torch and
transformers in that Python (.github/workflows/ros2.yml does all this):
    python3 -m pytest test/test_node_launch.py      (or: launch_test test/test_node_launch.py)
Without ROS 2 the module is skipped before anything from ROS is imported.
"""
import pytest

_NEEDS = "needs a sourced ROS 2 workspace with sam3_ros_interfaces built; see .github/workflows/ros2.yml"
for _module in ("rclpy", "launch", "launch_ros", "launch_testing", "sam3_ros_interfaces"):
    pytest.importorskip(_module, reason=f"{_module} is not importable: {_NEEDS}")

# Everything below imports ROS 2, so it comes after the skip guard.
import array
import tempfile
import threading
import time
import unittest
from pathlib import Path

import launch
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sam3_ros_interfaces import srv
from sam3_ros_interfaces.msg import Concept, InstanceArray
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import BoundingBox2D, Detection2DArray, Detection3DArray, LabelInfo, Point2D
from visualization_msgs.msg import MarkerArray

REPO = Path(__file__).resolve().parents[1]
NODE = "/sam3"
CAMERA = "/sam3_test_camera"
FRAME = "sam3_test_camera_optical"
WIDTH, HEIGHT, FOCAL = 64, 48, 50.0
DEPTH_M = 2.0
FPS = 5.0
STARTUP_TIMEOUT_S = 300.0   # process start, tiny model load and warm-up on a CI CPU
WAIT_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 30.0

OUTPUTS = {  # key -> (topic, type, latched)
    "instances": (f"{NODE}/instances", InstanceArray, False),
    "detections": (f"{NODE}/detections", Detection2DArray, False),
    "detections_3d": (f"{NODE}/detections_3d", Detection3DArray, False),
    "id_image": (f"{NODE}/instance_id_image", Image, False),
    "label_info": (f"{NODE}/label_info", LabelInfo, True),
    "overlay": (f"{NODE}/overlay", Image, False),
    "markers": (f"{NODE}/markers", MarkerArray, False),
    "diagnostics": ("/diagnostics", DiagnosticArray, False),
}
SERVICES = {"set_concepts": srv.SetConcepts, "add_concept": srv.AddConcept, "remove_concept": srv.RemoveConcept,
            "list_concepts": srv.ListConcepts, "reset_tracks": srv.ResetTracks, "refine_track": srv.RefineTrack}

_params_dir = tempfile.TemporaryDirectory()  # lives as long as the test module


@pytest.mark.launch_test
def generate_test_description():
    params_file = Path(_params_dir.name) / "sam3_test.yaml"
    params_file.write_text(yaml.safe_dump({"sam3": {"ros__parameters": {
        "detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "tracking.max_tracks": 4}}}))
    sam3 = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "sam3.launch.py")),
        launch_arguments={
            "image": f"{CAMERA}/image", "camera_info": f"{CAMERA}/camera_info", "depth": f"{CAMERA}/depth",
            "tiny": "true", "device": "cpu", "prompts": "red cup", "params_file": str(params_file),
            "autostart": "true", "rviz": "false",
        }.items())
    return launch.LaunchDescription([sam3, launch_testing.actions.ReadyToTest()])


def wait_until(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def stamp_key(stamp):
    return (stamp.sec, stamp.nanosec)


def concept(text="", cid="", boxes=(), threshold=0.0):
    msg = Concept(id=cid, text=text, score_threshold=threshold)
    msg.exemplar_boxes = [bbox(*b) for b in boxes]
    return msg


def bbox(x1, y1, x2, y2):
    box = BoundingBox2D(size_x=float(x2 - x1), size_y=float(y2 - y1))
    box.center.position.x, box.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
    return box


def ids(response):
    return [c.id for c in response.active_concepts]


class SyntheticCamera:
    """Publishes image, camera info and depth with one stamp at FPS; can send one bad image."""

    def __init__(self, node):
        self.node = node
        self.rgb = np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        depth = np.full((HEIGHT, WIDTH), DEPTH_M, np.float32)
        depth[:4, :4] = np.nan  # a hole in the reading
        self.depth = depth
        self.stamps = set()
        self.paused = threading.Event()
        self.pubs = {name: node.create_publisher(kind, f"{CAMERA}/{name}", 10)
                     for name, kind in (("image", Image), ("camera_info", CameraInfo), ("depth", Image))}
        node.create_timer(1.0 / FPS, self._tick)

    def _tick(self):
        if not self.paused.is_set():
            self.publish()

    def publish(self, encoding="rgb8"):
        stamp = self.node.get_clock().now().to_msg()
        self.stamps.add(stamp_key(stamp))
        self.pubs["image"].publish(self._image(stamp, encoding, self.rgb.tobytes(), WIDTH * 3))
        self.pubs["camera_info"].publish(self._info(stamp))
        self.pubs["depth"].publish(self._image(stamp, "32FC1", self.depth.astype("<f4").tobytes(), WIDTH * 4))
        return stamp

    @staticmethod
    def _image(stamp, encoding, data, step):
        msg = Image(height=HEIGHT, width=WIDTH, encoding=encoding, is_bigendian=0, step=step)
        msg.header.stamp, msg.header.frame_id = stamp, FRAME
        msg.data = array.array("B", data)
        return msg

    @staticmethod
    def _info(stamp):
        cx, cy = WIDTH / 2, HEIGHT / 2
        msg = CameraInfo(height=HEIGHT, width=WIDTH, distortion_model="plumb_bob")
        msg.header.stamp, msg.header.frame_id = stamp, FRAME
        msg.d = [0.0] * 5
        msg.k = [FOCAL, 0.0, cx, 0.0, FOCAL, cy, 0.0, 0.0, 1.0]
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        msg.p = [FOCAL, 0.0, cx, 0.0, 0.0, FOCAL, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return msg


class TestSam3Node(unittest.TestCase):
    """Runs in name order against one node; each step builds on the one before."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("sam3_launch_test")
        cls.lock = threading.Lock()
        cls.received = {key: [] for key in OUTPUTS}
        for key, (topic, kind, latched) in OUTPUTS.items():
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            cls.node.create_subscription(kind, topic, cls._recorder(key), qos)
        cls.clients = {name: cls.node.create_client(kind, f"{NODE}/{name}") for name, kind in SERVICES.items()}
        cls.clients["get_state"] = cls.node.create_client(GetState, f"{NODE}/get_state")
        cls.camera = SyntheticCamera(cls.node)
        cls.executor = SingleThreadedExecutor()
        cls.executor.add_node(cls.node)
        cls.spinner = threading.Thread(target=cls.executor.spin, daemon=True)
        cls.spinner.start()

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.spinner.join(timeout=10.0)
        cls.node.destroy_node()
        rclpy.shutdown()

    @classmethod
    def _recorder(cls, key):
        def record(msg):
            with cls.lock:
                cls.received[key].append(msg)
        return record

    def messages(self, key):
        with self.lock:
            return list(self.received[key])

    def call(self, name, request, timeout_s=CALL_TIMEOUT_S):
        client = self.clients[name]
        self.assertTrue(client.wait_for_service(timeout_sec=timeout_s), f"service {client.srv_name} not offered")
        future = client.call_async(request)
        wait_until(future.done, timeout_s, f"a response from {client.srv_name}")
        return future.result()

    def diagnostic_values(self):
        """Key/value pairs of the node's latest diagnostics status."""
        for msg in reversed(self.messages("diagnostics")):
            for status in msg.status:
                if status.name == "sam3_ros: perception" and status.hardware_id == NODE:
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def instances_after(self, stamp, with_instances=False):
        """InstanceArrays of frames stamped after ``stamp`` (optionally only non-empty ones)."""
        return [m for m in self.messages("instances") if stamp_key(m.header.stamp) > stamp_key(stamp)
                and (m.instances or not with_instances)]

    def test_1_autostart_configures_and_activates_the_node(self):
        def active():
            state = self.call("get_state", GetState.Request(), timeout_s=STARTUP_TIMEOUT_S).current_state
            return state.id == State.PRIMARY_STATE_ACTIVE
        wait_until(active, STARTUP_TIMEOUT_S, "the node to become active")
        listed = self.call("list_concepts", srv.ListConcepts.Request())
        self.assertTrue(listed.success)
        self.assertEqual(ids(listed), ["red_cup"])  # from the prompts launch argument

    def test_2_concept_services_validate_and_report_the_active_concepts(self):
        wait_until(lambda: self.messages("instances"), WAIT_TIMEOUT_S, "a first InstanceArray")
        done = self.call("set_concepts", srv.SetConcepts.Request(
            concepts=[concept("red cup"), concept("box", threshold=0.05)]))
        self.assertTrue(done.success, done.message)
        self.assertEqual(ids(done), ["red_cup", "box"])
        refused = self.call("set_concepts", srv.SetConcepts.Request(concepts=[concept("")]))
        self.assertFalse(refused.success)
        self.assertEqual(ids(refused), ["red_cup", "box"])  # nothing changed

        added = self.call("add_concept", srv.AddConcept.Request(concept=concept("crate"), replace=False))
        self.assertTrue(added.success, added.message)
        self.assertEqual(ids(added), ["red_cup", "box", "crate"])
        duplicate = self.call("add_concept", srv.AddConcept.Request(concept=concept("crate"), replace=False))
        self.assertFalse(duplicate.success)
        self.assertIn("replace=true", duplicate.message)
        exemplar = self.call("add_concept", srv.AddConcept.Request(
            concept=concept(cid="crate", boxes=[(8, 8, 32, 32)]), replace=True))
        self.assertTrue(exemplar.success, exemplar.message)
        self.assertEqual(len(exemplar.active_concepts[-1].exemplar_boxes), 1)

        self.assertFalse(self.call("remove_concept", srv.RemoveConcept.Request(id="nope")).success)
        removed = self.call("remove_concept", srv.RemoveConcept.Request(id="crate"))
        self.assertTrue(removed.success, removed.message)
        listed = self.call("list_concepts", srv.ListConcepts.Request())
        self.assertTrue(listed.success)
        self.assertEqual(ids(listed), ["red_cup", "box"])

    def test_3_every_output_carries_the_camera_stamp_and_frame(self):
        for key in OUTPUTS:
            wait_until(lambda: self.messages(key), WAIT_TIMEOUT_S, f"a message on {OUTPUTS[key][0]}")
        stamps = self.camera.stamps
        for key in ("instances", "detections", "detections_3d", "id_image", "label_info", "overlay"):
            msg = self.messages(key)[-1]
            self.assertIn(stamp_key(msg.header.stamp), stamps, key)
            self.assertEqual(msg.header.frame_id, FRAME, key)
        for marker in self.messages("markers")[-1].markers:
            self.assertIn(stamp_key(marker.header.stamp), stamps)
            self.assertEqual(marker.header.frame_id, FRAME)
        id_image, overlay = self.messages("id_image")[-1], self.messages("overlay")[-1]
        self.assertEqual((id_image.encoding, id_image.width, id_image.height), ("mono16", WIDTH, HEIGHT))
        self.assertEqual((overlay.encoding, overlay.width, overlay.height), ("rgb8", WIDTH, HEIGHT))
        self.assertIn("frames processed", wait_until(self.diagnostic_values, WAIT_TIMEOUT_S, "sam3 diagnostics"))

        # Detection2D ids are the track ids of the InstanceArray of the same frame.
        detections = {stamp_key(m.header.stamp): m for m in self.messages("detections")}
        pairs = [(m, detections[stamp_key(m.header.stamp)]) for m in self.messages("instances")
                 if stamp_key(m.header.stamp) in detections]
        self.assertTrue(pairs)
        for instances, dets in pairs:
            self.assertEqual([str(i.track_id) for i in instances.instances], [d.id for d in dets.detections])
        # 3D from the mask's depth pixels: a flat scene DEPTH_M away.
        def located():
            return [i for m in self.messages("instances") for i in m.instances if i.has_position]
        instance = wait_until(located, WAIT_TIMEOUT_S, "an instance with a 3D position")[-1]
        self.assertAlmostEqual(instance.centroid.z, DEPTH_M, places=3)
        self.assertEqual(instance.position_frame_id, FRAME)

    def test_4_refine_a_live_track_and_reset_tracks(self):
        for _ in range(3):  # a track may end between its message and the call: take a newer one
            start = self.camera.publish()
            track = wait_until(lambda: self.instances_after(start, with_instances=True), WAIT_TIMEOUT_S,
                               "a frame with instances")[-1].instances[-1]
            x, y = track.bbox.center.position.x, track.bbox.center.position.y
            request = srv.RefineTrack.Request(track_id=track.track_id, use_box=True, box=track.bbox,
                                              points=[Point2D(x=x, y=y)], point_positive=[True])
            refined = self.call("refine_track", request)
            if refined.success:
                break
        self.assertTrue(refined.success, refined.message)
        self.assertEqual(ids(refined), ["red_cup", "box"])
        request.track_id = 0  # 0 is never a track
        self.assertFalse(self.call("refine_track", request).success)

        seen = max(i.track_id for m in self.messages("instances") for i in m.instances)
        reset = self.call("reset_tracks", srv.ResetTracks.Request())
        self.assertTrue(reset.success, reset.message)
        after = self.camera.publish()
        later = wait_until(lambda: self.instances_after(after, with_instances=True), WAIT_TIMEOUT_S,
                           "instances after the reset")
        self.assertGreater(min(i.track_id for i in later[-1].instances), seen)  # ids are never reused

    def test_5_a_bad_encoding_is_dropped_and_the_node_keeps_publishing(self):
        self.camera.paused.set()  # the bad frame alone, so no newer frame replaces it unprocessed
        try:
            time.sleep(2.0 / FPS)
            bad = self.camera.publish(encoding="sam3_test_unknown")
            wait_until(lambda: int(self.diagnostic_values().get("bad images", 0)) >= 1, WAIT_TIMEOUT_S,
                       "diagnostics counting the bad image")
            self.assertFalse([m for m in self.messages("instances") if stamp_key(m.header.stamp) == stamp_key(bad)])
        finally:
            self.camera.paused.clear()
        wait_until(lambda: self.instances_after(bad), WAIT_TIMEOUT_S, "instances after the bad image")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
