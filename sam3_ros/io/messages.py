"""FrameResults and concepts as ROS 2 messages, built through a ``MessageTypes`` factory.

The same converters serve the ROS node (rclpy classes) and the offline tools (rosbags classes).
"""
from __future__ import annotations

import enum
from typing import Any, Iterable, Mapping

import numpy as np

from ..core.image_encoding import mono16_to_image_fields, rgb_to_image_fields
from ..core.geometry import OrientedBox
from ..core.prompts import Concept, ExemplarBox, PromptError, make_concept, validate_concept
from ..core.results import FrameResult, Instance, id_image_value  # noqa: F401  (re-exported)
from .overlay import instance_caption, track_colour
from .ros_types import MessageTypes

# visualization_msgs/Marker constants.
MARKER_CUBE = 1
MARKER_TEXT_VIEW_FACING = 9
MARKER_ADD = 0
MARKER_DELETEALL = 3
MARKER_NAMESPACE = "sam3"
BOX_MARKER_NAMESPACE = "sam3_boxes"
BOX_MARKER_ALPHA = 0.35
# A flat instance (depth of a plane) has a box of zero thickness, which rviz2 draws black or not at
# all (its faces' normals scale to zero): the cube is at least this thick in each axis.
BOX_MARKER_MIN_M = 0.01
# Text markers: scale.z is the text height, scaled with the instance (a share of its largest extent,
# clamped), so a cup's label is a couple of centimetres tall and a forklift's some 30 cm: legible
# from where one looks at a tabletop (~1 m) or a warehouse aisle (~10 m).
MARKER_TEXT_HEIGHT_PER_EXTENT = 0.2
MARKER_TEXT_HEIGHT_MIN_M = 0.02
MARKER_TEXT_HEIGHT_MAX_M = 0.3
# rviz2 advances a space by the marker's scale.x (and, when it is 0, by a width fixed at 1 m text
# height). Its font (Liberation Sans, 18 pt at 96 dpi in a 27 px glyph cell, drawn 2 * scale.z tall)
# advances a space 7 px: 2 * 7 / 27 = 0.52 of scale.z, the font's own word spacing.
MARKER_TEXT_SPACE_PER_HEIGHT = 0.52

_ORIGIN = (0.0, 0.0, 0.0)
_IDENTITY = (0.0, 0.0, 0.0, 1.0)
_INT32_IDS = 2**31
_DEFAULT_SCALE = (MARKER_TEXT_SPACE_PER_HEIGHT * MARKER_TEXT_HEIGHT_MIN_M, MARKER_TEXT_HEIGHT_MIN_M,
                  MARKER_TEXT_HEIGHT_MIN_M)


class DiagnosticLevel(enum.IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


# -- headers -------------------------------------------------------------------------------------


def header(stamp_ns: int, frame_id: str, types: MessageTypes) -> Any:
    """std_msgs/Header for a stamp in nanoseconds since the epoch."""
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    stamp = types.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)
    return types.new("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)


def _in_frame(header_msg: Any, frame_id: str, types: MessageTypes) -> Any:
    """The same stamp in another frame."""
    return types.new("std_msgs/msg/Header", stamp=header_msg.stamp, frame_id=frame_id)


# -- sam3_ros_interfaces ---------------------------------------------------------------------------


def instance_array(result: FrameResult, header_msg: Any, types: MessageTypes) -> Any:
    """sam3_ros_interfaces/InstanceArray with every instance of the result."""
    return types.new(
        "sam3_ros_interfaces/msg/InstanceArray",
        header=header_msg,
        instances=[_instance(inst, types) for inst in result.instances],
    )


def _instance(inst: Instance, types: MessageTypes) -> Any:
    position = inst.position_3d
    return types.new(
        "sam3_ros_interfaces/msg/Instance",
        track_id=inst.track_id,
        camera=inst.camera,
        concept_id=inst.concept_id,
        label=inst.label,
        score=float(inst.score),
        state=int(inst.state),
        bbox=_bbox2d(inst.box_xyxy, types),
        mask_height=inst.mask.height,
        mask_width=inst.mask.width,
        mask_rle=types.sequence(np.asarray(inst.mask.counts, dtype=np.uint32)),
        has_position=position is not None,
        position_frame_id=position.frame_id if position else "",
        centroid=_xyz("geometry_msgs/msg/Point", position.centroid if position else _ORIGIN, types),
        size=_xyz("geometry_msgs/msg/Vector3", position.size if position else _ORIGIN, types),
    )


def concept_msg(concept: Concept, types: MessageTypes) -> Any:
    """sam3_ros_interfaces/Concept; a default threshold (None) is sent as 0."""
    return types.new(
        "sam3_ros_interfaces/msg/Concept",
        id=concept.id,
        text=concept.text,
        exemplar_boxes=[_bbox2d(box.as_tuple(), types) for box in concept.exemplars],
        exemplar_positive=types.sequence(np.array([box.positive for box in concept.exemplars], dtype=bool)),
        score_threshold=float(concept.score_threshold or 0.0),
        camera=concept.camera,
    )


def concept_from_msg(msg: Any, image_size: tuple[int, int] | None = None) -> Concept:
    """A validated Concept from sam3_ros_interfaces/Concept (PromptError says what is wrong).

    Empty ``exemplar_positive`` means every box is positive; a threshold of 0 means the
    default. ``image_size`` (height, width) checks and clips boxes to the image they refer to (the image of
    the concept's ``camera``).
    The float32 threshold is rounded to 6 decimals so 0.3 stays 0.3.
    """
    boxes = list(msg.exemplar_boxes)
    positive = [bool(p) for p in msg.exemplar_positive] or [True] * len(boxes)
    if len(positive) != len(boxes):
        raise PromptError(
            f"concept {msg.id!r}: {len(boxes)} exemplar boxes but {len(positive)} exemplar_positive flags"
        )
    exemplars = [ExemplarBox(*_xyxy(box, msg.id, i), positive=flag)
                 for i, (box, flag) in enumerate(zip(boxes, positive))]
    threshold = round(float(msg.score_threshold), 6)
    concept = make_concept(msg.id, msg.text, exemplars, None if threshold == 0 else threshold, msg.camera)
    return validate_concept(concept, image_size) if image_size is not None else concept


# -- vision_msgs -----------------------------------------------------------------------------------


def detection2d_array(result: FrameResult, header_msg: Any, types: MessageTypes) -> Any:
    """vision_msgs/Detection2DArray: id = track id, one hypothesis (class_id = label, score)."""
    detections = [
        types.new(
            "vision_msgs/msg/Detection2D",
            header=header_msg,
            results=[_hypothesis(inst, _ORIGIN, types)],
            bbox=_bbox2d(inst.box_xyxy, types),
            id=str(inst.track_id),
        )
        for inst in result.instances
    ]
    return types.new("vision_msgs/msg/Detection2DArray", header=header_msg, detections=detections)


def detection3d_array(result: FrameResult, header_msg: Any, types: MessageTypes) -> Any:
    """vision_msgs/Detection3DArray of the instances that have a 3D position.

    Boxes are the PCA-oriented boxes of the instances' points, or axis-aligned (centre =
    centroid, size = extent) when there were too few points for one. They are in the positions'
    frame, which replaces the header's frame_id (they differ when positions go to a TF frame).
    """
    located = [inst for inst in result.instances if inst.position_3d is not None]
    frame_id = located[0].position_3d.frame_id if located else header_msg.frame_id
    detections = []
    for inst in located:
        position = inst.position_3d
        bbox = bounding_box_3d(inst, types)
        detections.append(types.new(
            "vision_msgs/msg/Detection3D",
            header=_in_frame(header_msg, position.frame_id, types),
            results=[_hypothesis(inst, position.centroid, types)],
            bbox=bbox,
            id=str(inst.track_id),
        ))
    return types.new("vision_msgs/msg/Detection3DArray", header=_in_frame(header_msg, frame_id, types),
                     detections=detections)


def instance_id_image(result: FrameResult, header_msg: Any, types: MessageTypes) -> Any:
    """sensor_msgs/Image (mono16): each pixel holds its instance's ``id_image_value``, 0 for none."""
    return _image(mono16_to_image_fields(result.instance_id_image()), header_msg, types)


def label_info(tracks: FrameResult | Mapping[int, str], header_msg: Any, types: MessageTypes,
               threshold: float = 0.0) -> Any:
    """vision_msgs/LabelInfo naming each instance-id image value "label #track_id".

    ``tracks`` is a FrameResult or a {track_id: label} mapping (e.g. every track seen so far).
    """
    if isinstance(tracks, FrameResult):
        tracks = {inst.track_id: inst.label for inst in tracks.instances}
    class_map = [
        types.new("vision_msgs/msg/VisionClass", class_id=id_image_value(track_id),
                  class_name=f"{label} #{track_id}")
        for track_id, label in sorted(tracks.items())
    ]
    return types.new("vision_msgs/msg/LabelInfo", header=header_msg, class_map=class_map,
                     threshold=float(threshold))


# -- sensor_msgs, visualization_msgs, diagnostic_msgs ---------------------------------------------------


def overlay_image(rgb: np.ndarray, header_msg: Any, types: MessageTypes) -> Any:
    """sensor_msgs/Image (rgb8) of an (H, W, 3) uint8 RGB array."""
    return _image(rgb_to_image_fields(rgb, "rgb8"), header_msg, types)


def marker_array(result: FrameResult, header_msg: Any, types: MessageTypes, lifetime_s: float = 0.0) -> Any:
    """visualization_msgs/MarkerArray: a DELETEALL marker, one text marker per instance, then
    one translucent cube per instance with an oriented box (namespace ``sam3_boxes``).

    Text ("label #id 0.87") sits at the instance's 3D centroid, in its position frame, sized by
    ``text_scale`` (height from the instance's extent, word spacing for rviz2); instances
    without a 3D position have nowhere to go and get no marker. Marker ids are track ids (mod
    2^31); colours are the overlay's track colours. ``lifetime_s`` 0 means forever.
    """
    markers = [_marker(types, header_msg, marker_id=0, action=MARKER_DELETEALL)]
    located = [inst for inst in result.instances if inst.position_3d is not None]

    def tracked(inst, alpha: float, **fields) -> Any:
        """A marker of one located instance: its frame, track id and track colour."""
        return _marker(types, _in_frame(header_msg, inst.position_3d.frame_id, types),
                       marker_id=inst.track_id % _INT32_IDS, action=MARKER_ADD,
                       rgba=(*(c / 255.0 for c in track_colour(inst.track_id)), alpha), lifetime_s=lifetime_s,
                       **fields)

    markers += [tracked(inst, 1.0, position=inst.position_3d.centroid, text=instance_caption(inst),
                        scale=text_scale(inst))
                for inst in located]
    markers += [tracked(inst, BOX_MARKER_ALPHA, position=box.center, namespace=BOX_MARKER_NAMESPACE,
                        marker_type=MARKER_CUBE, orientation=box.quaternion,
                        scale=[max(size, BOX_MARKER_MIN_M) for size in box.size])
                for inst in located if (box := inst.position_3d.box) is not None]
    return types.new("visualization_msgs/msg/MarkerArray", markers=markers)


def text_height(inst: Instance) -> float:
    """Height (metres) of a located instance's text marker: MARKER_TEXT_HEIGHT_PER_EXTENT of its
    largest extent (oriented box, else axis-aligned size), within [MIN, MAX]."""
    position = inst.position_3d
    extent = max((position.box.size if position.box is not None else position.size), default=0.0)
    return float(min(max(MARKER_TEXT_HEIGHT_PER_EXTENT * float(extent), MARKER_TEXT_HEIGHT_MIN_M),
                     MARKER_TEXT_HEIGHT_MAX_M))


def text_scale(inst: Instance) -> tuple[float, float, float]:
    """A text marker's scale: x = the space width rviz2 uses between words, z = the text height
    (y is unused by rviz2; set to the height)."""
    height = text_height(inst)
    return MARKER_TEXT_SPACE_PER_HEIGHT * height, height, height


def diagnostics(header_msg: Any, name: str, hardware_id: str, values: Mapping[str, Any], level: int,
                message: str, types: MessageTypes) -> Any:
    """diagnostic_msgs/DiagnosticArray with one status; floats are shown with 3 decimals."""
    return diagnostic_array(header_msg, [diagnostic_status(name, hardware_id, values, level, message, types)], types)


def diagnostic_status(name: str, hardware_id: str, values: Mapping[str, Any], level: int, message: str,
                      types: MessageTypes) -> Any:
    """diagnostic_msgs/DiagnosticStatus; floats are shown with 3 decimals."""
    key_values = [
        types.new("diagnostic_msgs/msg/KeyValue", key=str(key),
                  value=f"{value:.3f}" if isinstance(value, float) else str(value))
        for key, value in values.items()
    ]
    return types.new(
        "diagnostic_msgs/msg/DiagnosticStatus",
        level=types.byte(int(level)),
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=key_values,
    )


def diagnostic_array(header_msg: Any, statuses: list, types: MessageTypes) -> Any:
    return types.new("diagnostic_msgs/msg/DiagnosticArray", header=header_msg, status=statuses)


# -- manipulation: oriented boxes, point clouds, focus, find ----------------------------------------

POINT_FIELD_UINT32 = 6   # sensor_msgs/PointField datatypes
POINT_FIELD_FLOAT32 = 7
_POINT_FIELD_TYPES = {"<f4": POINT_FIELD_FLOAT32, "<u4": POINT_FIELD_UINT32}


def bounding_box_3d(inst: Instance, types: MessageTypes) -> Any:
    """vision_msgs/BoundingBox3D of a located instance: its oriented box, else axis-aligned."""
    position = inst.position_3d
    box = position.box or OrientedBox(position.centroid, position.size, _IDENTITY)
    return types.new("vision_msgs/msg/BoundingBox3D", center=_pose(box.center, types, box.quaternion),
                     size=_xyz("geometry_msgs/msg/Vector3", box.size, types))


def point_cloud2(cloud: np.ndarray, header_msg: Any, types: MessageTypes) -> Any:
    """sensor_msgs/PointCloud2 (unordered, little-endian) of a structured array of 4-byte fields,
    e.g. sam3_ros.core.point_cloud.CLOUD_DTYPE (x, y, z float32, track_id uint32).

    A ``track_id`` field gets an ``rgb`` field after the others: each point's track colour, the
    overlay's, packed as 0x00RRGGBB in a float32 (the PCL / RViz RGB8 convention).
    """
    cloud = with_track_colours(cloud)
    dtype = cloud.dtype
    fields = [types.new("sensor_msgs/msg/PointField", name=name, offset=dtype.fields[name][1],
                        datatype=_POINT_FIELD_TYPES[dtype.fields[name][0].str], count=1)
              for name in dtype.names]
    data = np.ascontiguousarray(cloud).view(np.uint8).reshape(-1)
    return types.new("sensor_msgs/msg/PointCloud2", header=header_msg, height=1, width=len(cloud), fields=fields,
                     is_bigendian=False, point_step=dtype.itemsize, row_step=dtype.itemsize * len(cloud),
                     data=types.sequence(data), is_dense=True)


def with_track_colours(cloud: np.ndarray) -> np.ndarray:
    """The structured array with an ``rgb`` float32 field appended: track_colour(track_id) packed
    as 0x00RRGGBB. Unchanged when it has no ``track_id`` field or already has ``rgb``."""
    names = cloud.dtype.names or ()
    if "track_id" not in names or "rgb" in names:
        return cloud
    ids, index = np.unique(cloud["track_id"], return_inverse=True)
    packed = np.array([(r << 16) | (g << 8) | b for r, g, b in map(track_colour, ids.tolist())],
                      dtype="<u4")
    coloured = np.empty(len(cloud), dtype=[(name, cloud.dtype.fields[name][0]) for name in names]
                        + [("rgb", "<f4")])
    for name in names:
        coloured[name] = cloud[name]
    coloured["rgb"] = packed[index.reshape(-1)].view("<f4") if len(cloud) else np.zeros(0, "<f4")
    return coloured


def found_instance(inst: Instance, types: MessageTypes) -> Any:
    """sam3_ros_interfaces/FoundInstance of a located instance (the ~/find action's answer)."""
    position = inst.position_3d
    return types.new("sam3_ros_interfaces/msg/FoundInstance", instance=_instance(inst, types),
                     oriented_box=bounding_box_3d(inst, types), oriented=position.box is not None,
                     num_points=position.num_points)


def pose_stamped(inst: Instance, header_msg: Any, types: MessageTypes) -> Any:
    """geometry_msgs/PoseStamped: a located instance's centroid with its box orientation."""
    position = inst.position_3d
    orientation = position.box.quaternion if position.box is not None else _IDENTITY
    return types.new("geometry_msgs/msg/PoseStamped", header=_in_frame(header_msg, position.frame_id, types),
                     pose=_pose(position.centroid, types, orientation))


def mask_image(mask: np.ndarray, header_msg: Any, types: MessageTypes) -> Any:
    """sensor_msgs/Image (mono8) of an (H, W) boolean mask: 255 inside, 0 outside."""
    grey = np.repeat((np.asarray(mask, dtype=bool).astype(np.uint8) * 255)[..., None], 3, axis=2)
    return _image(rgb_to_image_fields(grey, "mono8"), header_msg, types)


def focus_status(track_id: int, status: int, label: str, has_pose: bool, message: str, header_msg: Any,
                 types: MessageTypes) -> Any:
    return types.new("sam3_ros_interfaces/msg/FocusStatus", header=header_msg, track_id=int(track_id),
                     status=int(status), label=label, has_pose=bool(has_pose), message=message)


# -- small parts -------------------------------------------------------------------------------------


def _xyz(typename: str, values: Iterable[float], types: MessageTypes) -> Any:
    x, y, z = (float(v) for v in values)
    return types.new(typename, x=x, y=y, z=z)


def _pose(position: Iterable[float], types: MessageTypes, orientation: Iterable[float] = _IDENTITY) -> Any:
    """geometry_msgs/Pose at ``position`` with an (x, y, z, w) orientation (default: identity)."""
    x, y, z, w = (float(v) for v in orientation)
    orientation = types.new("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w)
    return types.new("geometry_msgs/msg/Pose", position=_xyz("geometry_msgs/msg/Point", position, types),
                     orientation=orientation)


def _hypothesis(inst: Instance, position: Iterable[float], types: MessageTypes) -> Any:
    hypothesis = types.new("vision_msgs/msg/ObjectHypothesis", class_id=inst.label, score=float(inst.score))
    pose = types.new("geometry_msgs/msg/PoseWithCovariance", pose=_pose(position, types),
                     covariance=types.sequence(np.zeros(36)))
    return types.new("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=hypothesis, pose=pose)


def _bbox2d(box_xyxy: Iterable[float], types: MessageTypes) -> Any:
    """vision_msgs/BoundingBox2D (centre and size, pixels) of an (x1, y1, x2, y2) box."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    centre = types.new("vision_msgs/msg/Point2D", x=(x1 + x2) / 2, y=(y1 + y2) / 2)
    pose = types.new("vision_msgs/msg/Pose2D", position=centre, theta=0.0)
    return types.new("vision_msgs/msg/BoundingBox2D", center=pose, size_x=x2 - x1, size_y=y2 - y1)


def _xyxy(bbox: Any, concept_id: str, index: int) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of an axis-aligned vision_msgs/BoundingBox2D."""
    if bbox.center.theta != 0:
        raise PromptError(f"concept {concept_id!r}, exemplar box {index}: rotated boxes "
                          f"(theta={bbox.center.theta}) are not supported")
    x, y = bbox.center.position.x, bbox.center.position.y
    half_w, half_h = bbox.size_x / 2, bbox.size_y / 2
    return x - half_w, y - half_h, x + half_w, y + half_h


def _image(fields: dict[str, Any], header_msg: Any, types: MessageTypes) -> Any:
    payload = {**fields, "data": types.sequence(fields["data"])}
    return types.new("sensor_msgs/msg/Image", header=header_msg, **payload)


def _marker(types: MessageTypes, header_msg: Any, marker_id: int, action: int,
            position: Iterable[float] = _ORIGIN, text: str = "",
            rgba: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0), lifetime_s: float = 0.0,
            namespace: str = MARKER_NAMESPACE, marker_type: int = MARKER_TEXT_VIEW_FACING,
            orientation: Iterable[float] = _IDENTITY, scale: Iterable[float] | None = None) -> Any:
    """A visualization_msgs/Marker (text unless ``marker_type`` says otherwise), every field given."""
    lifetime_sec, lifetime_ns = divmod(round(lifetime_s * 1e9), 10**9)
    r, g, b, a = rgba
    return types.new(
        "visualization_msgs/msg/Marker",
        header=header_msg,
        ns=namespace,
        id=marker_id,
        type=marker_type,
        action=action,
        pose=_pose(position, types, orientation),
        scale=_xyz("geometry_msgs/msg/Vector3", scale or _DEFAULT_SCALE, types),
        color=types.new("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=a),
        lifetime=types.new("builtin_interfaces/msg/Duration", sec=lifetime_sec, nanosec=lifetime_ns),
        frame_locked=False,
        points=[],
        colors=[],
        texture_resource="",
        texture=types.new("sensor_msgs/msg/CompressedImage", header=header_msg, format="",
                          data=types.sequence(np.zeros(0, dtype=np.uint8))),
        uv_coordinates=[],
        text=text,
        mesh_resource="",
        mesh_file=types.new("visualization_msgs/msg/MeshFile", filename="",
                            data=types.sequence(np.zeros(0, dtype=np.uint8))),
        mesh_use_embedded_materials=False,
    )
