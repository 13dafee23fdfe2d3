"""Batched, on-device image preparation: uint8 (B, 3, S, S) in, normalised float (B, 3, S, S) out.

Training batches are augmented as a whole (no per-image Python loop), with random numbers from an explicit
generator so a seeded run is reproducible. Which augmentation depends on the training side S, not on the stem
(`for_training_side`):
- S <= SMALL_IMAGE_SIDE: random crop from the image padded by S/8 pixels (reflect), then a horizontal flip.
- larger: random-resized crop (8%..100% of the area, aspect 3/4..4/3) resampled with roi_align, then flip.
A random-resized crop of a 32 px image keeps as little as 9 x 9 pixels of it: too little to tell a cat from a dog,
so on small images it cripples the network whatever the stem.
The probe and held-out passes use `normalize` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from labelscrub.config import SMALL_IMAGE_SIDE

# Random-resized-crop ranges, torchvision's defaults.
RRC_AREA = (0.08, 1.0)
RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))


def for_training_side(side: int) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The training augmentation for images trained at `side` pixels (see the module docstring)."""
    return random_crop_flip if side <= SMALL_IMAGE_SIDE else random_resized_crop_flip


def channel_stats(pixels: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on a 0..1 scale."""
    sample = pixels[: 10_000].float() / 255.0
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def normalize(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (batch.float() / 255.0 - mean) / std


def random_crop_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Padded random crop and horizontal flip, for images trained at up to SMALL_IMAGE_SIDE pixels."""
    count, _, size, _ = batch.shape
    pad = max(1, size // 8)
    padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (2, count), generator=generator).to(batch.device)
    steps = torch.arange(size, device=batch.device)
    rows = (offsets[0][:, None] + steps)[:, None, :, None]
    cols = (offsets[1][:, None] + steps)[:, None, None, :]
    cropped = padded[torch.arange(count, device=batch.device)[:, None, None, None],
                     torch.arange(3, device=batch.device)[None, :, None, None], rows, cols]
    return _flip(cropped, generator)


def random_resized_crop_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random-resized crop and horizontal flip, for images trained at more than SMALL_IMAGE_SIDE pixels."""
    count, _, size, _ = batch.shape
    area = torch.empty(count).uniform_(*RRC_AREA, generator=generator) * size * size
    ratio = torch.exp(torch.empty(count).uniform_(*RRC_LOG_RATIO, generator=generator))
    width = torch.sqrt(area * ratio).clamp(1, size)
    height = torch.sqrt(area / ratio).clamp(1, size)
    left = torch.rand(count, generator=generator) * (size - width)
    top = torch.rand(count, generator=generator) * (size - height)
    boxes = torch.stack([torch.arange(count, dtype=torch.float32), left, top, left + width, top + height], dim=1)
    cropped = roi_align(batch, boxes.to(batch.device, batch.dtype), output_size=size, aligned=True)
    return _flip(cropped, generator)


def _flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flips = (torch.rand(batch.shape[0], generator=generator) < 0.5).to(batch.device)
    return torch.where(flips[:, None, None, None], batch.flip(3), batch)
