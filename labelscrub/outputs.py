"""Files and folders every command shares: the output-folder guard, decoding with spill files, the model file,
checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelscrub import checkpoint
from labelscrub.atomic import atomic_path
from labelscrub.config import CleanConfig
from labelscrub.errors import LabelscrubError
from labelscrub.images import decode_all
from labelscrub.sources import LabeledImages
from labelscrub.version import __version__

CACHE_FOLDER = ".labelscrub-cache"  # decoded-image spill files; removed when the run ends
CHECKPOINT_NAME = "checkpoint.pt"  # written after every epoch, removed when the run completes


def prepare_out_dir(out_dir: Path, data_path: Path, overwrite: bool, *, resume: bool = False) -> None:
    """Refuse an output folder inside the input, or one holding files, unless --overwrite or --resume."""
    data_root = (data_path if data_path.is_dir() else data_path.parent).resolve()
    if data_path.is_dir() and out_dir.resolve().is_relative_to(data_root):
        raise LabelscrubError(f"{out_dir}: the output folder is inside the input {data_path}; "
                              "labelscrub never writes into its input, choose a folder outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise LabelscrubError(f"{out_dir}: exists and is not a folder; choose another --out")
    if resume:
        if not (out_dir / CHECKPOINT_NAME).exists():
            raise LabelscrubError(f"{out_dir}: no {CHECKPOINT_NAME} to resume from (the run finished, or never "
                                  "completed an epoch); run again without --resume")
        return
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise LabelscrubError(f"{out_dir}: the output folder is not empty; pass --overwrite to replace its "
                              "labelscrub outputs, or choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LabelscrubError(f"{out_dir}: cannot create the output folder ({error.strerror or error})") from None


def spill_path(cache_dir: Path, name: str) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir / name


def decode_to_device(images: LabeledImages, config: CleanConfig, cache_dir: Path, name: str,
                     device: torch.device, *, on_progress: Callable[[int, int], None] | None = None,
                     ) -> tuple[torch.Tensor, np.ndarray, list[str | None]]:
    """Decode `images` at config.image_size, spilling to `cache_dir/name` beyond the memory budget, onto `device`.
    Returns the pixels, the labels with -1 where a sample is unreadable or unlabelled, and each sample's error.
    `on_progress` is `decode_all`'s."""
    pixels, errors = decode_all(images, config.image_size, memory_budget_bytes=int(config.image_memory_gb * 1e9),
                                spill_path=spill_path(cache_dir, name), on_progress=on_progress)
    labels = np.where([error is None for error in errors], images.labels, -1)
    return to_device(pixels, device), labels, errors


def to_device(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(pixels)  # shares memory with a memory-mapped array instead of loading it
    # Small decoded datasets live on the accelerator so batches never cross the bus; others stay in host memory.
    if device.type == "cuda" and tensor.numel() < 0.25 * torch.cuda.mem_get_info(device)[0]:
        return tensor.to(device)
    return tensor


def save_model(state: dict[str, torch.Tensor], target: Path, class_names: list[str], config: Any,
               normalization: dict[str, list[float]]) -> None:
    """A CPU state dict (`model.cpu_state_dict`) plus what is needed to use it; only tensors and plain values, so
    weights_only=True loads it."""
    payload = {"state_dict": state, "class_names": class_names, "config": config.to_dict(),
               "normalization": normalization, "labelscrub_version": __version__}
    with atomic_path(target) as temporary:
        torch.save(payload, temporary)


def save_checkpoint(out_dir: Path, payload: dict) -> None:
    with atomic_path(out_dir / CHECKPOINT_NAME) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(out_dir: Path, current_fingerprint: dict) -> dict:
    """The checkpoint in `out_dir`, refused with the differences named when it belongs to another run."""
    path = out_dir / CHECKPOINT_NAME
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged or foreign file: say so instead of a pickle traceback
        raise LabelscrubError(f"{path}: cannot read the checkpoint ({type(error).__name__}); run again without "
                              "--resume (use --overwrite)") from None
    problems = checkpoint.mismatch(saved["fingerprint"], current_fingerprint)
    if saved.get("format") != checkpoint.FORMAT or problems:
        raise LabelscrubError(f"{path}: cannot resume, the run differs ({'; '.join(problems) or 'older format'}); "
                              "pass the same input and options, or start again with --overwrite")
    return saved
