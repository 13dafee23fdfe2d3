"""The network: torchvision's ResNet-18, untrained, with the stem chosen for the image size:

- "imagenet": torchvision's own stem (7x7 stride-2 conv, 3x3 max-pool), for images around 224 px.
- "cifar": a 3x3 stride-1 conv and no max-pool, so small images (CIFAR's 32 px) are not shrunk to nothing.

`save_model` writes model.pt: the trained weights with what is needed to use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18

from labelscrub.atomic import atomic_path
from labelscrub.version import __version__


def build_model(num_classes: int, stem: str) -> nn.Module:
    model = resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif stem != "imagenet":
        raise ValueError(f"unknown stem {stem!r}")
    return model


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights and buffers on the CPU, for files that must load on any machine."""
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


def pick_device(requested: str) -> torch.device:
    """"auto" prefers CUDA, then Apple's MPS, then the CPU."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def save_model(state: dict[str, torch.Tensor], target: Path, class_names: list[str], config: Any,
               normalization: dict[str, list[float]]) -> None:
    """A CPU state dict (`cpu_state_dict`) plus what is needed to use it; only tensors and plain values, so
    weights_only=True loads it."""
    payload = {"state_dict": state, "class_names": class_names, "config": config.to_dict(),
               "normalization": normalization, "labelscrub_version": __version__}
    with atomic_path(target) as temporary:
        torch.save(payload, temporary)
