"""The arithmetic a run trains in (`CleanConfig.precision`): bf16 autocast with the channels-last memory layout, or
plain fp32.

- "auto" resolves to bf16 on CUDA and on CPUs that PyTorch reports to have AMX, the bf16 matrix units; to fp32
  elsewhere. AVX512-BF16 alone is not enough: on one such Xeon the whole CPU loop ran 0.84-0.88x as fast in bf16 as in
  fp32, on an AMD EPYC with the same flag 1.14x (32 px) to 1.62x (64 px) as fast (BENCHMARKS.md, "Precision on the
  CPU"), and no check PyTorch exposes tells the two apart: `--precision bf16` is the user's to choose there. Without
  bf16 instructions PyTorch emulates bf16. On Apple MPS autocast to bf16 depends on the macOS version and is
  unmeasured here, so fp32.
- Only the network's convolutions and matrix products run in bf16. Every per-sample measurement (loss, margin,
  probabilities) is computed from the logits cast back to fp32 (train.py), and the weights, the optimiser state and
  batch norm's running statistics stay fp32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

from labelscrub.config import CleanConfig
from labelscrub.errors import LabelscrubError


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has AMX tiles, by PyTorch's own check of the instruction sets its kernels use (oneDNN runs
    bf16 convolutions on them). A PyTorch without the check counts as no."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check is not None and check())


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision a run on `device` uses: "bf16" or "fp32" ("auto" as the module docstring says)."""
    if requested == "auto":
        if device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16()):
            return "bf16"
        return "fp32"
    if requested == "bf16" and device.type == "mps":
        raise LabelscrubError("--precision bf16 is not supported on Apple MPS; use --precision fp32 (or auto)")
    return requested


def with_precision(config: CleanConfig, device: torch.device) -> CleanConfig:
    """`config` with its precision resolved for `device`, as run.json and the checkpoint's fingerprint record it
    (a run resumed where "auto" means something else is refused)."""
    return dataclasses.replace(config, precision=resolve_precision(config.precision, device))


def autocast_for(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the context the network's forward passes run in."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def uses_channels_last(precision: str, device: torch.device) -> bool:
    """Channels-last pays with bf16 (oneDNN's and cuDNN's fast kernels want it) and on CUDA; in fp32 on the CPU it
    made a 32 px step slower (BENCHMARKS.md)."""
    return precision == "bf16" or device.type == "cuda"
