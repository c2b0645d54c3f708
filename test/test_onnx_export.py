"""ONNX export of every component, onnxruntime against PyTorch, and the onnxruntime backend end to end."""
import json
import shutil

import numpy as np
import pytest
import torch

from sam3_ros.backends.graphs import GRAPHS
from sam3_ros.backends.manifest import MANIFEST, ExportedModelError, read_manifest
from sam3_ros.backends.onnx_export import VERIFY_DIMS, export_onnx
from sam3_ros.cli import EXIT_OK, main
from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.prompts import ExemplarBox, make_concept
from sam3_ros.factory import load_pipeline

PERMISSIVE = {"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "tracking.max_tracks": 6}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny):
    directory = tmp_path_factory.mktemp("onnx")
    manifest = export_onnx(tiny, directory, log=lambda message: None)
    return directory, manifest


def test_every_component_exports_with_dynamic_axes_and_matches_pytorch(exported):
    directory, manifest = exported
    assert set(manifest["components"]) == {spec.name for spec in GRAPHS}
    assert json.loads((directory / MANIFEST).read_text()) == manifest
    for spec in GRAPHS:
        entry = manifest["components"][spec.name]
        assert (directory / entry["file"]).is_file()
        symbolic = {dim for i in entry["inputs"] for dim in i["shape"] if isinstance(dim, str)}
        assert symbolic == {name for axes in spec.dynamic.values() for name in axes.values()}
        for output, check in entry["verification"].items():
            # Checked on other sizes than the traced ones (VERIFY_DIMS), so the axes really are dynamic.
            tolerance = 2e-2 if output == "memory_features" else 1e-3  # memory is stored as bfloat16
            assert check["cosine"] >= 0.999 and check["max_rel_error"] < tolerance, (spec.name, output, check)
        assert entry["tensorrt_issues"] == [], (spec.name, entry["tensorrt_issues"])
    tracker_shapes = {o["name"]: o["shape"] for o in manifest["components"]["tracker"]["inputs"]}
    assert tracker_shapes["spatial"][:2] == ["tracks", "memories"]
    assert manifest["components"]["tracker"]["verification"]["mask_logits"]["shape"][0] == VERIFY_DIMS["tracks"]


def test_onnxruntime_backend_gives_the_same_frame_results_as_torch(exported, tiny):
    directory, _ = exported
    config = PipelineConfig().updated({**PERMISSIVE, "model.tiny": True, "model.device": "cpu",
                                       "model.engines_dir": str(directory)})
    rng = np.random.default_rng(0)
    frames = [(rng.random((96, 128, 3)) * 255).astype(np.uint8) for _ in range(6)]
    results = {}
    for backend in ("torch", "onnxruntime"):
        loaded = load_pipeline(config.updated({"model.backend": backend}), tiny if backend == "torch" else None)
        assert "RANDOM WEIGHTS" in loaded.description
        pipeline = loaded.pipeline
        pipeline.set_concepts([make_concept(None, "red cup"), make_concept("crate", "", [ExemplarBox(10, 10, 60, 50)])])
        results[backend] = [pipeline.step(frame) for frame in frames]
    assert sum(len(r.instances) for r in results["torch"]) > 0
    for ours, theirs in zip(results["torch"], results["onnxruntime"]):
        assert [(i.track_id, i.concept_id, i.state) for i in ours.instances] == \
               [(i.track_id, i.concept_id, i.state) for i in theirs.instances]
        for a, b in zip(ours.instances, theirs.instances):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            assert np.abs(np.subtract(a.box_xyxy, b.box_xyxy)).max() <= 1.0
            ma, mb = a.mask.to_array(), b.mask.to_array()
            assert (ma & mb).sum() / max((ma | mb).sum(), 1) >= 0.99


def test_exports_of_another_model_or_incomplete_exports_are_refused(exported, tmp_path):
    directory, manifest = exported
    with pytest.raises(ExportedModelError, match="not the configured one"):
        read_manifest(directory, fingerprint="0123456789abcdef")
    with pytest.raises(ExportedModelError, match="sam3-ros export"):
        read_manifest(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(directory, partial)
    (partial / manifest["components"]["tracker"]["file"]).unlink()
    with pytest.raises(ExportedModelError, match="tracker"):
        read_manifest(partial)
    config = PipelineConfig().updated({"model.backend": "onnxruntime", "model.engines_dir": str(tmp_path / "none")})
    with pytest.raises(ExportedModelError):
        load_pipeline(config)


def test_export_command_writes_the_requested_components(tmp_path, capsys):
    assert main(["export", "--tiny", "--output", str(tmp_path / "e"), "--components", "text", "memory_encoder"]) == EXIT_OK
    manifest = read_manifest(tmp_path / "e")
    assert set(manifest["components"]) == {"text", "memory_encoder"}
    assert manifest["model"]["random_weights"] is True
    assert (tmp_path / "e" / "tokenizer").is_dir()
    assert main(["export", "--tiny", "--output", str(tmp_path / "f"), "--components", "nope"]) == 2


def test_compiled_torch_components_compute_the_same(tiny_components):
    from sam3_ros.backends.torch_fast import compile_components

    fast = compile_components(tiny_components)
    g = tiny_components.geometry
    vision = tiny_components.vision(torch.randn(1, 3, g.image_size, g.image_size))
    for tracks in (2, 5):  # dynamic batch: no recompilation per size needed for correctness
        logits = torch.randn(tracks, g.mask_size, g.mask_size) * 10
        objects = torch.where(torch.rand(tracks) > 0.5, 10.0, -10.0)
        torch.testing.assert_close(fast.memory_encoder(vision, logits, objects),
                                   tiny_components.memory_encoder(vision, logits, objects))
