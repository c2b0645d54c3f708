"""Arithmetic floor of each SAM 3 component at full size: FLOPs counted, bytes estimated.

    python benchmarks/arithmetic_floor.py [--device cpu]

FLOPs are counted by running each component once under torch.utils.flop_counter (matrix
products and convolutions, 2 FLOPs per multiply-add) on the full-size architecture with random
weights. Bytes are the fewest a component must move: its weights once (bfloat16) plus its
inputs and outputs once. Floors use the ceilings measured on this workplace's GPUs
(/work/.library/device/KINDS.md: bf16 matrix products on random data and device-to-device
copy): H100 798 TFLOP/s and 3.0 TB/s, H200 788 TFLOP/s and 4.3 TB/s. The larger of the two
times is the floor; no implementation runs much faster.
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from sam3_ros.backends.graphs import GRAPHS
from sam3_ros.backends.torch_backend import geometry_of
from sam3_ros.core.memory_bank import MemoryEntry, TrackMemory, batch_memories

CEILINGS = {"H100": (798e12, 3.0e12), "H200": (788e12, 4.3e12)}  # (bf16 FLOP/s, bytes/s), measured here
BF16 = 2


def count(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * BF16 for t in tensors)


def component_parameters(model) -> dict[str, int]:
    """Parameters of each SAM 3 component of a Sam3VideoModel (the vision count includes the tracker neck)."""
    return {
        "vision": sum(p.numel() for p in model.detector_model.vision_encoder.parameters())
        + sum(p.numel() for p in model.tracker_neck.parameters()),
        "text": sum(p.numel() for p in model.detector_model.text_encoder.parameters()),
        "detector": sum(p.numel() for n, p in model.detector_model.named_parameters()
                        if not n.startswith(("vision_encoder", "text_encoder"))),
        "tracker": sum(p.numel() for p in model.tracker_model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from bench_pipeline import full_size_model

    loaded = full_size_model(args.device, "float32")
    loaded.model.requires_grad_(False)  # the FLOP counter's module hooks expect no autograd state
    loaded.model.set_attn_implementation("eager")  # explicit matrix products, all of them counted
    g = geometry_of(loaded)
    model = loaded.model
    params = component_parameters(model)
    from sam3_ros.backends.torch_backend import torch_components

    c = torch_components(loaded)
    pixels = torch.randn(1, 3, g.image_size, g.image_size, device=loaded.device)
    vision = c.vision(pixels)
    specs = {s.name: s for s in GRAPHS}
    text_inputs = specs["text"].example(g, torch.float32, concepts=1)
    prompts = c.text(text_inputs["input_ids"].to(loaded.device), text_inputs["attention_mask"].to(loaded.device))

    memory = TrackMemory(g.num_maskmem, 4, g.max_object_pointers)
    for frame in range(40):  # steady state: 4 conditioning frames, 6 recent frames, 19 pointers
        memory.add(MemoryEntry(frame, torch.randn(g.grid ** 2, g.memory_dim, device=loaded.device).bfloat16(),
                               torch.randn(g.hidden, device=loaded.device), frame % 10 == 0))
    batch = batch_memories([memory], 40)
    masks = torch.randn(1, g.mask_size, g.mask_size, device=loaded.device)

    vision_out = [*vision.det_fpn, *vision.trk_high_res, vision.trk_feat]
    rows = [
        ("vision backbone + FPNs (per frame)", count(lambda: c.vision(pixels)), params["vision"],
         tensor_bytes([pixels, *vision_out])),
        ("text encoder (per phrase, cached)", count(lambda: c.text(text_inputs["input_ids"], text_inputs["attention_mask"])),
         params["text"], 0),
        ("detector head (per concept)", count(lambda: c.detector(vision, prompts)), params["detector"],
         tensor_bytes(vision.det_fpn)),
        ("tracker step (per track, full memory)", count(lambda: c.tracker(vision, batch)), params["tracker"],
         tensor_bytes([batch.spatial, batch.pointers])),
        ("memory encoder (per track)", count(lambda: c.memory_encoder(vision, masks, torch.ones(1, device=loaded.device))),
         0, tensor_bytes([masks, vision.trk_feat])),
    ]
    print(f"full-size SAM 3 (random weights), input {g.image_size}px, grid {g.grid}x{g.grid}; "
          f"memory: {batch.spatial.shape[1]} spatial memories x {g.grid ** 2} tokens, {batch.pointers.shape[1]} pointers")
    print(f"{'component':42s} {'GFLOP':>9s} {'params M':>9s} {'MB moved':>9s} "
          + " ".join(f"{name + ' floor ms':>15s}" for name in CEILINGS))
    for name, flops, n_params, io_bytes in rows:
        moved = n_params * BF16 + io_bytes
        floors = [max(flops / rate, moved / bandwidth) * 1e3 for rate, bandwidth in CEILINGS.values()]
        print(f"{name:42s} {flops / 1e9:9.1f} {n_params / 1e6:9.1f} {moved / 1e6:9.1f} "
              + " ".join(f"{f:15.3f}" for f in floors))


if __name__ == "__main__":
    main()
