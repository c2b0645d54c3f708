"""The sam3_ros lifecycle node: rclpy wiring around NodeCore (sam3_ros/ros/controller.py).

configure: declare parameters, load the model (or engines) and warm up.
activate: subscribe each camera (image [+ camera_info] [+ depth], synchronised) and start the worker thread.
Several cameras (``cameras``): each one's inputs are ``NAME/...`` and its outputs ``~/NAME/...``;
focus outputs stay ``~/focus/...``.
deactivate: unsubscribe, stop the worker, free GPU memory. Services answer in every state.
"""
from __future__ import annotations

import functools
import logging
import signal
import threading
import traceback
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.action import ActionServer, CancelResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sam3_ros_interfaces import srv
from sam3_ros_interfaces.action import Find
from sam3_ros_interfaces.msg import FocusStatus, InstanceArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ..core.depth import quaternion_matrix
from ..factory import load_pipeline
from .controller import NodeCore
from .find import FindReason, run_find
from ..core.config import PipelineConfig
from .lifecycle import transition_refusal
from .params import (NodeParams, all_parameters, camera_keys_given, camera_parameters, parameter_change_refusal,
                     parameter_ranges, split_parameters)
from .rclpy_types import RclpyTypes
from .worker import InferenceWorker

OUTPUTS = {  # FrameOutputs attribute -> (topic, message type); a named camera's are under ~/NAME/
    "instances": ("~/instances", InstanceArray),
    "detections": ("~/detections", Detection2DArray),
    "detections_3d": ("~/detections_3d", Detection3DArray),
    "id_image": ("~/instance_id_image", Image),
    "overlay": ("~/overlay", Image),
    "markers": ("~/markers", MarkerArray),
    "instance_points": ("~/instance_points", PointCloud2),
    "focus_pose": ("~/focus/pose", PoseStamped),
    "focus_mask": ("~/focus/mask", Image),
    "focus_status": ("~/focus/status", FocusStatus),
}
NODE_OUTPUTS = ("focus_pose", "focus_mask", "focus_status")  # one for the node, whatever camera the track is on
# ROS 2's default service queue keeps 10 requests: a burst of calls would lose the rest unanswered.
SERVICE_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
SERVICES = {  # service name -> (type, NodeCore handler name)
    "~/set_concepts": (srv.SetConcepts, "set_concepts"),
    "~/add_concept": (srv.AddConcept, "add_concept"),
    "~/remove_concept": (srv.RemoveConcept, "remove_concept"),
    "~/list_concepts": (srv.ListConcepts, "list_concepts"),
    "~/reset_tracks": (srv.ResetTracks, "reset_tracks"),
    "~/refine_track": (srv.RefineTrack, "refine_track"),
    "~/focus": (srv.Focus, "set_focus"),
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


def _logged_transition(callback):
    """rclpy turns an exception in a transition callback into ERROR without a word: say why."""
    @functools.wraps(callback)
    def run(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return callback(self, state)
        except Exception as err:
            self._transition_error = f"{callback.__name__} from {state.label} failed: {type(err).__name__}: {err}"
            self.get_logger().error(f"{self._transition_error}\n" + traceback.format_exc())
            return TransitionCallbackReturn.ERROR
    return run


class Sam3Node(LifecycleNode):
    def __init__(self, **kwargs: Any):
        super().__init__("sam3", **kwargs)
        core_log = logging.getLogger("sam3_ros")
        core_log.addHandler(_RosLogHandler(self.get_logger()))
        core_log.setLevel(logging.INFO)
        core_log.propagate = False
        ranges = parameter_ranges()
        for name, (default, description) in all_parameters().items():
            # Dynamic typing where rclpy's strict typing bites: an empty-list default is typed as a
            # byte array whatever the descriptor says (rclpy #912), and `-p x:=1` for a float
            # parameter is an integer. split_parameters() checks and converts every value, and
            # enforces the range shown as the descriptor's constraints (`ros2 param describe`).
            loose = isinstance(default, (list, float))
            typing = dict(dynamic_typing=True) if loose else dict(type=_PARAMETER_TYPES[type(default)])
            self.declare_parameter(name, default, ParameterDescriptor(
                description=description, additional_constraints=ranges[name], **typing))
        self._declare_camera_parameters()
        self.core: NodeCore | None = None
        self._pubs: dict[tuple[str, str], Any] = {}  # (camera, FrameOutputs field) -> publisher; focus: camera ""
        self._camera_inputs: list[Any] = []  # not `_subscriptions`: that name is rclpy's own list
        self._types = RclpyTypes()
        self._tf_buffer = None
        self.core = self._make_core()
        self._worker = InferenceWorker(self.core.process_step, self._publish_outputs, context_ok=self.context.ok)
        self._guard_change_state()
        self.add_on_set_parameters_callback(self._check_parameter_change)
        # A new camera's NAME.* are declared right after `cameras` names it, so they can be set before configure
        # (not in the parameter callback itself: declaring there deadlocks rclpy's parameter service).
        self._declare_cameras = self.create_timer(0.0, self._declare_new_cameras,
                                                  callback_group=MutuallyExclusiveCallbackGroup())
        self._declare_cameras.cancel()
        self.add_post_set_parameters_callback(
            lambda changed: self._declare_cameras.reset() if any(p.name == "cameras" for p in changed) else None)
        services = ReentrantCallbackGroup()  # services answer while a frame is processed or the model loads
        for name, (srv_type, handler) in SERVICES.items():
            self.create_service(srv_type, name, self._service(handler), qos_profile=SERVICE_QOS,
                                callback_group=services)
        self._find_server = ActionServer(self, Find, "~/find", self._execute_find, callback_group=services,
                                         cancel_callback=lambda _: CancelResponse.ACCEPT)
        self.create_timer(self.core.params.diagnostics_period_s, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _cameras(self) -> list[str]:
        return [str(v) for v in (self.get_parameter("cameras").value or [])]

    def _declare_camera_parameters(self) -> None:
        """Declare ``NAME.<key>`` for each camera not declared yet (at start-up and whenever ``cameras``
        changes). Dynamically typed: a bad value is refused at configure with its name, not by
        rclpy at start-up. Values come from -p and params files like any other parameter."""
        for camera in self._cameras():
            for name, (default, description) in camera_parameters(camera).items():
                if not self.has_parameter(name):
                    self.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                              dynamic_typing=True))

    def _declare_new_cameras(self) -> None:
        self._declare_cameras.cancel()  # once per change of cameras
        try:
            self._declare_camera_parameters()
        except Exception as err:  # e.g. a -p value for the new camera that its check refuses
            self.get_logger().error(f"cameras {self._cameras()}: {err}; configure fails until it is fixed")

    def _parameter_values(self) -> dict[str, Any]:
        """Every parameter's value by name: the declared ones, each camera's, and (with cameras) any given
        NAME.key override nobody declared, so that a misspelt one fails configure."""
        values = {}
        for name, (default, _) in all_parameters().items():
            value = self.get_parameter(name).value
            values[name] = [str(v) for v in (value or [])] if isinstance(default, list) else value
        cameras = self._cameras()
        for camera in cameras:  # declared or about to be (a declaration is checked like a change)
            values.update({name: self.get_parameter(name).value if self.has_parameter(name) else default
                           for name, (default, _) in camera_parameters(camera).items()})
        if cameras:
            overrides = getattr(self, "_parameter_overrides", {})
            values.update({name: overrides[name].value for name in camera_keys_given(overrides)
                           if name not in values and not self.has_parameter(name)})
        return values

    def _make_core(self) -> NodeCore:
        try:
            params, config = split_parameters(self._parameter_values())
        except ValueError as err:  # reported again, and fatal, at configure
            self.get_logger().error(f"invalid parameters: {err}")
            params, config = NodeParams(), PipelineConfig()
        return NodeCore(params, config, self._types, pipeline_factory=load_pipeline,
                        now_ns=lambda: self.get_clock().now().nanoseconds, lookup_transform=self._lookup_transform)

    def _check_parameter_change(self, changed) -> SetParametersResult:
        refusal = parameter_change_refusal(self._parameter_values(), {p.name: p.value for p in changed})
        return SetParametersResult(successful=refusal is None, reason=refusal or "")

    def _guard_change_state(self) -> None:
        """Answer an invalid transition id with failure: rclpy 7.1 raises inside the executor,
        which ends the process."""
        service = getattr(self, "_service_change_state", None)
        if service is None:
            return
        change_state = service.callback

        def guarded(request, response):
            transition = request.transition
            available = [(t[0], t[1]) for t in self._state_machine.available_transitions]  # (id, label, ...)
            refusal = transition_refusal(available, transition.id, transition.label, self._state_machine.current_state[1])
            if refusal is None:
                try:
                    return change_state(request, response)
                except Exception as err:  # keep the node up whatever the state machine says
                    refusal = f"{type(err).__name__}: {err}"
            self.get_logger().warning(f"lifecycle transition refused: {refusal}")
            response.success = False
            return response
        service.callback = guarded

    def _has_subscribers(self, camera: str, output: str) -> bool:
        publisher = self._pubs.get(("" if output in NODE_OUTPUTS else camera, output))
        return publisher is not None and publisher.get_subscription_count() > 0

    # -- life cycle --------------------------------------------------------------------------------------
    @_logged_transition
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._declare_camera_parameters()  # cameras named since start-up, whatever the timer has done
            self.core.update_parameters(*split_parameters(self._parameter_values()))  # changes made before configure
            self.get_logger().info("loading SAM 3 ...")
            self.core.configure()
        except Exception as err:  # a bad checkpoint or device must fail the transition, not the process
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        if self.core.model.weights is None:  # the weights loader logs its own description (once)
            self.get_logger().info(self.core.model.description)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for camera, session in self.core.sessions.items():
            for key, (topic, msg_type) in OUTPUTS.items():
                if key not in NODE_OUTPUTS:
                    topic = session.settings.output_prefix + topic[len("~/"):]
                    self._pubs[(camera, key)] = self.create_lifecycle_publisher(msg_type, topic, 10)
            self._pubs[(camera, "label_info")] = self.create_lifecycle_publisher(
                LabelInfo, session.settings.output_prefix + "label_info", latched)
            # outputs nobody subscribes to are not built
            session.subscribed = functools.partial(self._has_subscribers, camera)
        for key in NODE_OUTPUTS:
            self._pubs[("", key)] = self.create_lifecycle_publisher(OUTPUTS[key][1], OUTPUTS[key][0], 10)
        if any(session.settings.target_frame for session in self.core.sessions.values()):
            import tf2_ros

            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        return TransitionCallbackReturn.SUCCESS

    @_logged_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.activate()
        self._subscribe()
        self._worker.start()
        return super().on_activate(state)

    @_logged_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.core.deactivate()
        return super().on_deactivate(state)

    @_logged_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    @_logged_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    @_logged_transition
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} raised: releasing everything, back to unconfigured")
        self._release()
        reason = getattr(self, "_transition_error", f"a transition from {state.label} raised")
        self.core.fail(f"{reason}; the node is unconfigured: configure it again")  # diagnostics: ERROR, not OK
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self._stop()
        for publisher in self._pubs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._pubs.clear()
        self.core.cleanup()

    def _stop(self) -> None:
        """Stop taking and processing frames; safe to call in any state, and twice."""
        if not self._worker.stop():
            self.get_logger().warning("the inference thread did not stop within 10 s")
        for subscription in self._camera_inputs:
            self.destroy_subscription(subscription)
        self._camera_inputs.clear()

    # -- inputs -------------------------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        for session in self.core.sessions.values():
            s = session.settings
            qos = QoSProfile(depth=s.queue_depth, reliability=ReliabilityPolicy.RELIABLE) \
                if s.reliability == "reliable" else qos_profile_sensor_data
            types = {"image": CompressedImage if s.compressed else Image, "camera_info": CameraInfo, "depth": Image}
            for (role, topic), callback in zip(session.inputs(), session.callbacks()):
                subscription = self.create_subscription(types[role], topic, callback, qos)
                self._camera_inputs.append(subscription)
                session.topic_names[role] = subscription.topic_name  # resolved: diagnostics name it

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
    def _publish_outputs(self, step: dict) -> None:
        """Each camera's outputs of one step on its publishers (focus outputs: the node's)."""
        for camera, outputs in step.items():
            for (owner, key), publisher in list(self._pubs.items()):
                message = getattr(outputs, key)
                if message is not None and owner == ("" if key in NODE_OUTPUTS else camera):
                    publisher.publish(message)

    def _publish_diagnostics(self) -> None:
        if self.context.ok():
            self._diagnostics.publish(self.core.diagnostics(hardware_id=self.get_fully_qualified_name()))

    def _execute_find(self, goal_handle) -> Find.Result:
        session = self.core.start_find(goal_handle.request)
        try:
            outcome = run_find(session, lambda: goal_handle.is_cancel_requested, lambda progress:
                               goal_handle.publish_feedback(_filled(Find.Feedback(), self.core.find_feedback(progress))))
        finally:
            self.core.finish_find(session)
        if outcome.reason == FindReason.CANCELED:
            goal_handle.canceled()
        elif outcome.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return _filled(Find.Result(), self.core.find_result(outcome))

    def _service(self, handler_name: str):
        def handle(request, response):
            return _filled(response, getattr(self.core, handler_name)(request))
        return handle


def _filled(message, fields: dict[str, Any]):
    """``message`` with the fields NodeCore returned (a response, result or feedback)."""
    for name, value in fields.items():
        setattr(message, name, value)
    return message


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(args: list[str] | None = None) -> None:
    """Spin until SIGINT or SIGTERM, then stop in order: inference thread, subscriptions, node,
    context. rclpy's own handlers would invalidate the context under a publishing thread.

    Every later SIGINT or SIGTERM is taken too, until the process has exited: a terminal's Ctrl-C
    reaches the node and `ros2 launch` at once, and launch forwards a second SIGINT moments later.
    Python restores the default handlers while the interpreter shuts down (a second or more with
    torch loaded), and the default SIGINT handler would kill the process there (exit -2, "process
    has died" in launch); signals ignored by then stay ignored to the end.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    node = Sam3Node()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        try:
            node.get_logger().info("shutting down")
            node._stop()
            executor.shutdown(timeout_sec=5.0)
            node.destroy_node()
            rclpy.try_shutdown()
        finally:
            for signum in STOP_SIGNALS:  # shutting down already: later signals change nothing
                signal.signal(signum, signal.SIG_IGN)
