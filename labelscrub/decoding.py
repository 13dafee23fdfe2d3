"""Decoding a source's images for training: `images.decode_all` at the resolved size, spilling to a cache folder
in the output folder beyond the memory budget, the labels of unreadable samples set to -1, the pixels placed on
the device.

Under torchrun the processes of one machine share one decoding: local rank 0 decodes into a memory-mapped file in
the cache folder, named for the machine, and the others map it once it is done (why: distributed.py). A sample that
any machine could not read is unreadable on every rank, so all ranks train on the same samples."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from labelscrub.config import CleanConfig
from labelscrub.distributed import Processes, node_file
from labelscrub.images import decode_all
from labelscrub.sources import LabeledImages

CACHE_FOLDER = ".labelscrub-cache"  # decoded-image spill files; removed when the run ends


@contextmanager
def spill_folder(out_dir: Path) -> Iterator[Path]:
    """The folder for spill files in `out_dir`, removed when the block ends, however it ends."""
    cache_dir = out_dir / CACHE_FOLDER
    try:
        yield cache_dir
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def spill_path(cache_dir: Path, name: str) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir / name


def decode_to_device(images: LabeledImages, config: CleanConfig, cache_dir: Path, name: str,
                     device: torch.device, *, on_progress: Callable[[int, int], None] | None = None,
                     processes: Processes | None = None) -> tuple[torch.Tensor, np.ndarray, list[str | None]]:
    """Decode `images` at config.image_size, spilling to `cache_dir/name` beyond the memory budget, onto `device`.
    Returns the pixels, the labels with -1 where a sample is unreadable or unlabelled, and each sample's error.
    `on_progress` is `decode_all`'s. Under torchrun (`processes`), once per machine into its memory-mapped file."""
    if processes is not None and processes.distributed:
        pixels, errors = _decode_once_per_machine(images, config, cache_dir / node_file(name, processes), processes,
                                                  on_progress)
    else:
        pixels, errors = decode_all(images, config.image_size,
                                    memory_budget_bytes=int(config.image_memory_gb * 1e9),
                                    spill_path=spill_path(cache_dir, name), on_progress=on_progress)
    labels = np.where([error is None for error in errors], images.labels, -1)
    return to_device(pixels, device), labels, errors


def _decode_once_per_machine(images: LabeledImages, config: CleanConfig, path: Path, processes: Processes,
                             on_progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, list[str | None]]:
    """Local rank 0 decodes into the memory-mapped file `path`, whatever the memory budget (in RAM every process
    would hold a copy); the other processes map it when every machine is done."""
    errors = None
    if processes.local_rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a new file: processes still mapping an earlier one keep theirs intact
        pixels, errors = decode_all(images, config.image_size, memory_budget_bytes=0, spill_path=path,
                                    on_progress=on_progress)
        pixels.flush()
    found = [errors for errors in processes.gather_objects(errors) if errors is not None]
    merged = [next((errors[index] for errors in found if errors[index]), None) for index in range(len(images))]
    if processes.local_rank != 0:
        pixels = np.load(path, mmap_mode="r")  # read-only: a stray write must not change what the others train on
    return pixels, merged


def to_device(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch warns that it cannot mark a tensor of a read-only array read-only; the loops only ever read pixels
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(pixels)  # shares memory with a memory-mapped array instead of loading it
    # Small decoded datasets live on the accelerator so batches never cross the bus; others stay in host memory.
    if device.type == "cuda" and tensor.numel() < 0.25 * torch.cuda.mem_get_info(device)[0]:
        return tensor.to(device)
    return tensor
