"""Camera images to SAM 3 inputs, on the model's device."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# SAM 3's image processor: rescale to [0, 1], normalise with mean 0.5 and std 0.5.
_MEAN = 0.5
_STD = 0.5
TEXT_CONTEXT_LENGTH = 32


def image_to_pixel_values(image: np.ndarray | torch.Tensor, size: int, device: torch.device,
                          dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size) normalised pixels, resized on ``device``; written
    into ``out`` (a (1, 3, size, size) ``dtype`` tensor, e.g. one camera's row of a batch) when given.

    The camera's bytes travel as uint8 (a third of float32's); the resize and the normalisation
    run on ``device``. On the CPU the resize runs on the uint8 pixels (torch's vectorised uint8
    kernel, about twice as fast), which rounds the resized values to integers; elsewhere it runs in
    float. The resize ignores aspect ratio, as SAM 3's own processor does, so normalised box and
    mask coordinates map straight back onto the original image.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {tuple(image.shape)} {image.dtype}")
    if image.device.type == "cpu" and device.type == "cuda":
        image = image.pin_memory()
    nchw = image.to(device, non_blocking=True).permute(2, 0, 1).unsqueeze(0)  # a channels-last view
    if device.type != "cpu":
        nchw = nchw.float()
    resized = F.interpolate(nchw, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    pixels = resized.float().mul_(1.0 / (255.0 * _STD)).sub_(_MEAN / _STD)
    return pixels.to(dtype) if out is None else out.copy_(pixels)


def tokenize(tokenizer, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Token ids and attention masks padded to SAM 3's 32-token context, plus any warnings."""
    encoded = tokenizer(phrases, padding="max_length", truncation=True, max_length=TEXT_CONTEXT_LENGTH,
                        return_tensors="pt")
    warnings = []
    for phrase in phrases:
        if len(tokenizer(phrase).input_ids) > TEXT_CONTEXT_LENGTH:
            warnings.append(f"phrase {phrase!r} is longer than {TEXT_CONTEXT_LENGTH} tokens and was truncated")
    return encoded.input_ids, encoded.attention_mask, warnings
