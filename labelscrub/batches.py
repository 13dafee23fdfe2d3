"""Where the loops' uint8 batches come from: a gather where the images lie, or DataLoader workers streaming them.

Decoded images live in one uint8 array (images.py): on the GPU when they fit its share, else in host memory or a
memory-mapped file. A CUDA run whose large images stay on the host streams its batches through DataLoader worker
processes: each worker gathers whole batches, reading rows in ascending order (front to back in a memory-mapped
file), into pinned memory, so the copy to the GPU overlaps the step before it. Everywhere else a batch is one
gather in the main process: on the GPU the images are already there; on the CPU the workers would take cores
from the training itself; and small images are gathered faster than workers start and hand them over (both
measured: BENCHMARKS.md, "Streaming batches"). The loops decide the order of the rows and augment with the run's
own generator, so a run gives the same result whichever way its batches arrive.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labelscrub.config import SMALL_IMAGE_SIDE

# Workers when streaming is chosen automatically: enough to hide reads behind a step, few enough to leave the
# main process its cores.
MAX_AUTO_WORKERS = 4
# Batches each worker prepares ahead of the one being trained on.
PREFETCH_PER_WORKER = 2


def auto_workers(pixels: torch.Tensor, device: torch.device, *, processes_here: int = 1) -> int:
    """Workers for `pixels` trained on `device` when the user has not chosen: up to MAX_AUTO_WORKERS, one core left
    to the main process, where a CUDA GPU trains on large images held by the host; otherwise none. The machine's
    cores are shared by the `processes_here` training processes on it (torchrun's LOCAL_WORLD_SIZE), each with its
    own workers: 8 processes with 4 workers each would crowd 16 cores with 40 processes. On Apple's MPS
    the host memory is the GPU's, and a process forked after MPS has started is not safe to use. Small images
    (CIFAR-sized) are gathered in the main process: on an H200 at 32 px, four workers took 1.31x the time of
    images kept on the GPU and the in-process gather 1.08x, since starting workers every pass and handing batches
    over cost more than a gather of small rows."""
    if (device.type != "cuda" or pixels.device.type == device.type or pixels.shape[-1] <= SMALL_IMAGE_SIDE
            or not can_fork()):
        return 0
    cores = (os.cpu_count() or 2) // max(1, processes_here)
    return max(1, min(MAX_AUTO_WORKERS, cores - 1))


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
