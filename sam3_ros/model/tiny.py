"""Tiny random-init SAM 3 (the real transformers architecture, scaled down) for tests and demos.

The weights are random: detections are meaningless, but every code path, tensor shape and
memory structure is the real one. Constraints of the architecture (seen with transformers 5.x):
hidden sizes must be multiples of 64 above 64 (the tracker memory is 64 wide) and
``low_res_mask_size`` must be ``4 * image_size // 14``.
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer
from transformers.models.sam3.configuration_sam3 import (
    Sam3Config,
    Sam3DETRDecoderConfig,
    Sam3DETREncoderConfig,
    Sam3GeometryEncoderConfig,
    Sam3MaskDecoderConfig,
    Sam3VisionConfig,
    Sam3ViTConfig,
)
from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import Sam3TrackerVideoConfig
from transformers.models.sam3_video.configuration_sam3_video import Sam3VideoConfig

TINY_IMAGE_SIZE = 224
TINY_HIDDEN = 128
TINY_HEADS = 4
TINY_MLP = 256
TINY_QUERIES = 8
TEXT_CONTEXT = 32


def byte_level_clip_tokenizer() -> CLIPTokenizer:
    """A real CLIP tokenizer over single bytes (no merges), small enough for the tiny vocabulary."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_sam3_video_config(image_size: int = TINY_IMAGE_SIZE, vocab_size: int | None = None) -> Sam3VideoConfig:
    """A Sam3VideoConfig of the real architecture, a few million parameters in all."""
    if image_size % 14 or (image_size // 14) % 2:
        raise ValueError("tiny image_size must be a multiple of 28")
    hidden, heads, mlp = TINY_HIDDEN, TINY_HEADS, TINY_MLP
    grid = image_size // 14
    tokenizer_vocab = vocab_size or len(byte_level_clip_tokenizer())
    backbone = Sam3ViTConfig(
        hidden_size=hidden, num_hidden_layers=2, num_attention_heads=heads, intermediate_size=mlp,
        image_size=image_size, patch_size=14, window_size=grid // 2, global_attn_indexes=[1],
    )
    vision = Sam3VisionConfig(
        backbone_config=backbone, fpn_hidden_size=hidden, scale_factors=[4.0, 2.0, 1.0, 0.5],
        backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
    )
    text = dict(
        vocab_size=tokenizer_vocab, hidden_size=hidden, intermediate_size=mlp, projection_dim=hidden,
        num_hidden_layers=2, num_attention_heads=heads, max_position_embeddings=TEXT_CONTEXT,
        hidden_act="gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    detector = Sam3Config(
        vision_config=vision, text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(
            hidden_size=hidden, num_layers=1, num_attention_heads=heads, intermediate_size=mlp),
        detr_encoder_config=Sam3DETREncoderConfig(
            hidden_size=hidden, num_layers=1, num_attention_heads=heads, intermediate_size=mlp),
        detr_decoder_config=Sam3DETRDecoderConfig(
            hidden_size=hidden, num_layers=2, num_queries=TINY_QUERIES, num_attention_heads=heads,
            intermediate_size=mlp),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=hidden, num_upsampling_stages=3),
    )
    tracker = Sam3TrackerVideoConfig(
        vision_config=detector.vision_config.to_dict(),
        prompt_encoder_config=dict(hidden_size=hidden),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=mlp, iou_head_hidden_dim=hidden),
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=mlp, memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=mlp, image_size=image_size,
    )
    config = Sam3VideoConfig(
        detector_config=detector.to_dict(), tracker_config=tracker.to_dict(),
        low_res_mask_size=4 * grid,
    )
    config.image_size = image_size
    return config


def save_tiny_checkpoint(directory: str | Path, seed: int = 0, image_size: int = TINY_IMAGE_SIZE) -> Path:
    """Write a random-init tiny checkpoint laid out like a facebook/sam3 download."""
    import torch
    from transformers import Sam3VideoModel

    directory = Path(directory)
    torch.manual_seed(seed)
    model = Sam3VideoModel(tiny_sam3_video_config(image_size)).eval()
    model.save_pretrained(directory)
    byte_level_clip_tokenizer().save_pretrained(directory)
    (directory / "RANDOM_WEIGHTS").write_text("Tiny random-init SAM 3 for tests; not a trained model.\n")
    return directory
