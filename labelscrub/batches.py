"""Where the loops' uint8 batches come from: a gather on the device, or DataLoader workers streaming host memory.

Decoded images live in one uint8 array (images.py). When that array sits on the training device (a CIFAR-sized
dataset on the GPU, or an in-RAM dataset trained on the CPU) a batch is one gather where it lies, and extra
processes would only add copies. Otherwise (decoded images too large for their share of the GPU, or spilled to a
memory-mapped file) batches stream through DataLoader worker processes: each worker gathers whole batches from
host memory or from the file, reading rows in ascending order, into pinned memory on CUDA so the copy to the GPU
overlaps the step before it. The loops decide the order of the rows and augment on the device with the run's own
generator, so a run gives the same result whichever way its batches arrive.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labelscrub.images import exceeds_memory_budget

# Workers when streaming is chosen automatically: enough to hide reads behind a step, few enough to leave the
# main process its cores.
MAX_AUTO_WORKERS = 4
# Batches each worker prepares ahead of the one being trained on.
PREFETCH_PER_WORKER = 2


def auto_workers(pixels: torch.Tensor, device: torch.device, image_memory_gb: float) -> int:
    """Workers for `pixels` trained on `device` when the user has not chosen: none where a batch is one gather on
    the device; otherwise up to MAX_AUTO_WORKERS, one core left to the main process."""
    on_training_device = pixels.device.type == device.type
    memory_mapped = exceeds_memory_budget(tuple(pixels.shape), image_memory_gb * 1e9)
    if (on_training_device and not memory_mapped) or not can_fork():
        return 0
    return max(1, min(MAX_AUTO_WORKERS, (os.cpu_count() or 2) - 1))


def can_fork() -> bool:
    """Workers inherit the decoded array by fork (sharing it, memory-mapped or not, without a copy); where the
    platform cannot fork, batches are gathered in the main process instead."""
    return "fork" in multiprocessing.get_all_start_methods()


def stream(pixels: torch.Tensor, batches: Sequence[np.ndarray], device: torch.device,
           workers: int) -> Iterator[torch.Tensor]:
    """The uint8 rows `batches[i]` of `pixels`, in that order, on `device`: one tensor per batch."""
    if workers <= 0 or not can_fork():
        for rows in batches:
            yield pixels[torch.from_numpy(rows).to(pixels.device)].to(device, non_blocking=True)
        return
    loader = DataLoader(_Batches(pixels, batches), batch_size=None, num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=PREFETCH_PER_WORKER,
                        multiprocessing_context="fork")
    for batch in loader:
        yield batch.to(device, non_blocking=True)


class _Batches(Dataset):
    """Item i is the whole batch `batches[i]`, so each worker does one gather per batch, not one per image."""

    def __init__(self, pixels: torch.Tensor, batches: Sequence[np.ndarray]):
        self.pixels, self.batches = pixels, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int) -> torch.Tensor:
        rows = self.batches[position]
        # Ascending reads touch a memory-mapped file front to back; the result is put back in the asked order.
        order = np.argsort(rows, kind="stable")
        gathered = self.pixels[torch.from_numpy(rows[order])]
        batch = torch.empty_like(gathered)
        batch[torch.from_numpy(order)] = gathered
        return batch
