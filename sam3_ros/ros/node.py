"""The sam3_ros lifecycle node: rclpy wiring around NodeCore (sam3_ros/ros/controller.py).

configure: declare parameters, load the model (or engines) and warm up.
activate: subscribe (image [+ camera_info] [+ depth], synchronised) and start the worker thread.
deactivate: unsubscribe, stop the worker, free GPU memory. Services answer in every state.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sam3_ros_interfaces import srv
from sam3_ros_interfaces.msg import InstanceArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ..core.depth import quaternion_matrix
from ..factory import load_pipeline
from .controller import NodeCore
from ..core.config import PipelineConfig
from .params import NodeParams, all_parameters, split_parameters
from .rclpy_types import RclpyTypes

OUTPUTS = {  # FrameOutputs attribute -> (topic, message type)
    "instances": ("~/instances", InstanceArray),
    "detections": ("~/detections", Detection2DArray),
    "detections_3d": ("~/detections_3d", Detection3DArray),
    "id_image": ("~/instance_id_image", Image),
    "overlay": ("~/overlay", Image),
    "markers": ("~/markers", MarkerArray),
}
SERVICES = {  # service name -> (type, NodeCore handler name)
    "~/set_concepts": (srv.SetConcepts, "set_concepts"),
    "~/add_concept": (srv.AddConcept, "add_concept"),
    "~/remove_concept": (srv.RemoveConcept, "remove_concept"),
    "~/list_concepts": (srv.ListConcepts, "list_concepts"),
    "~/reset_tracks": (srv.ResetTracks, "reset_tracks"),
    "~/refine_track": (srv.RefineTrack, "refine_track"),
}
_PARAMETER_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                    str: ParameterType.PARAMETER_STRING}


class _RosLogHandler(logging.Handler):
    """Sends the core's Python logging (sam3_ros.*) to the node's ROS logger."""

    def __init__(self, ros_logger):
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(message)
        else:
            self.ros_logger.info(message)


class Sam3Node(LifecycleNode):
    def __init__(self, **kwargs: Any):
        super().__init__("sam3", **kwargs)
        core_log = logging.getLogger("sam3_ros")
        core_log.addHandler(_RosLogHandler(self.get_logger()))
        core_log.setLevel(logging.INFO)
        core_log.propagate = False
        for name, (default, description) in all_parameters().items():
            # Dynamic typing where rclpy's strict typing bites: an empty-list default is typed as a
            # byte array whatever the descriptor says (rclpy #912), and `-p x:=1` for a float
            # parameter is an integer. split_parameters() checks and converts every value.
            loose = isinstance(default, (list, float))
            typing = dict(dynamic_typing=True) if loose else dict(type=_PARAMETER_TYPES[type(default)])
            self.declare_parameter(name, default, ParameterDescriptor(
                description=description, read_only=name.startswith("model."), **typing))
        self.core: NodeCore | None = None
        self._pubs: dict[str, Any] = {}
        self._subscriptions: list[Any] = []
        self._worker: threading.Thread | None = None
        self._running = threading.Event()
        self._types = RclpyTypes()
        self._tf_buffer = None
        self.core = self._make_core()
        services = ReentrantCallbackGroup()  # services answer while a frame is processed or the model loads
        for name, (srv_type, handler) in SERVICES.items():
            self.create_service(srv_type, name, self._service(handler), callback_group=services)
        self.create_timer(self.core.params.diagnostics_period_s, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _parameter_values(self) -> dict[str, Any]:
        values = {}
        for name, (default, _) in all_parameters().items():
            value = self.get_parameter(name).value
            values[name] = [str(v) for v in (value or [])] if isinstance(default, list) else value
        return values

    def _make_core(self) -> NodeCore:
        try:
            params, config = split_parameters(self._parameter_values())
        except ValueError as err:  # reported again, and fatal, at configure
            self.get_logger().error(f"invalid parameters: {err}")
            params, config = NodeParams(), PipelineConfig()
        return NodeCore(params, config, self._types, pipeline_factory=load_pipeline,
                        now_ns=lambda: self.get_clock().now().nanoseconds, lookup_transform=self._lookup_transform)

    # -- life cycle --------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.core.update_parameters(*split_parameters(self._parameter_values()))  # changes made before configure
            self.get_logger().info("loading SAM 3 ...")
            self.core.configure()
        except Exception as err:  # a bad checkpoint or device must fail the transition, not the process
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(self.core.model.description)
        for key, (topic, msg_type) in OUTPUTS.items():
            self._pubs[key] = self.create_lifecycle_publisher(msg_type, topic, 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pubs["label_info"] = self.create_lifecycle_publisher(LabelInfo, "~/label_info", latched)
        if self.core.params.target_frame:
            import tf2_ros

            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.activate()
        self._subscribe()
        self._running.set()
        self._worker = threading.Thread(target=self._work, name="sam3-inference", daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.core.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        for publisher in self._pubs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._pubs.clear()
        self.core.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        return TransitionCallbackReturn.SUCCESS

    def _stop(self) -> None:
        self._running.clear()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions.clear()

    # -- inputs -------------------------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        import message_filters

        p = self.core.params
        qos = QoSProfile(depth=p.queue_depth, reliability=ReliabilityPolicy.RELIABLE) \
            if p.reliability == "reliable" else qos_profile_sensor_data
        image_type = CompressedImage if p.image_topic.rstrip("/").endswith("compressed") else Image
        if not p.depth_topic and not p.camera_info_topic:
            self._subscriptions.append(self.create_subscription(
                image_type, p.image_topic, lambda msg: self.core.on_camera(msg), qos))
            return
        filters = [message_filters.Subscriber(self, image_type, p.image_topic, qos_profile=qos)]
        if p.camera_info_topic:
            filters.append(message_filters.Subscriber(self, CameraInfo, p.camera_info_topic, qos_profile=qos))
        if p.depth_topic:
            filters.append(message_filters.Subscriber(self, Image, p.depth_topic, qos_profile=qos))
        sync = message_filters.ApproximateTimeSynchronizer(filters, queue_size=p.queue_depth, slop=p.sync_slop_s)
        sync.registerCallback(self._on_synchronised)
        self._subscriptions.extend(f.sub for f in filters)
        self._sync = sync

    def _on_synchronised(self, image, *rest) -> None:
        p = self.core.params
        info = rest[0] if p.camera_info_topic else None
        depth = rest[-1] if p.depth_topic else None
        self.core.on_camera(image, info, depth)

    def _lookup_transform(self, target: str, source: str, stamp_ns: int):
        import tf2_ros

        if self._tf_buffer is None:
            raise LookupError("TF is not set up")
        try:
            t = self._tf_buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns),
                                                 timeout=Duration(seconds=0.05)).transform
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException, tf2_ros.ExtrapolationException) as err:
            raise LookupError(str(err)) from err
        q = t.rotation
        return quaternion_matrix(q.x, q.y, q.z, q.w), np.array([t.translation.x, t.translation.y, t.translation.z])

    # -- work and outputs ------------------------------------------------------------------------------------
    def _work(self) -> None:
        while self._running.is_set() and rclpy.ok():
            try:
                outputs = self.core.process_next(timeout_s=0.1)
            except Exception as err:  # never let a frame kill the worker
                self.get_logger().error(f"frame processing failed: {type(err).__name__}: {err}",
                                        throttle_duration_sec=5.0)
                continue
            if outputs is None:
                continue
            for key, publisher in self._pubs.items():
                message = getattr(outputs, key)
                if message is not None:
                    publisher.publish(message)

    def _publish_diagnostics(self) -> None:
        self._diagnostics.publish(self.core.diagnostics(hardware_id=self.get_fully_qualified_name()))

    def _service(self, handler_name: str):
        def handle(request, response):
            fields = getattr(self.core, handler_name)(request)
            for name, value in fields.items():
                setattr(response, name, value)
            return response
        return handle


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = Sam3Node()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node._stop()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
