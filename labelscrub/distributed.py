"""Several processes under torchrun: the process group and the few collectives labelscrub needs.

Without torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK, ...) `start` gives `Processes.single`: no process
group, and every method below is the identity, so a plain run takes the same code path and gives the same result
bit for bit. Under torchrun (`torchrun --nproc_per_node N -m labelscrub clean ...`) there is one process per device:
nccl on CUDA (device cuda:LOCAL_RANK), gloo on the CPU.

- Training steps go through DistributedDataParallel (plain BatchNorm per rank). Every rank draws the same
  permutation of the kept samples from the shared, seeded generator and takes every size-th of them from its rank
  on, the permutation padded by repeating its start so every rank takes the same number of steps
  (`training_share`, as DistributedSampler pads). Repeats train but are not recorded.
- Measuring (left-out samples, the probe pass, held-out accuracy) splits the rows across ranks (`share`) and
  runs the plain module, never the DDP wrapper: shards may be uneven, and DDP's forward takes part in collectives.
  `combine_rows` then gives every rank the full per-row tensors: each rank sends the rows it measured (in
  training, the first appearances of its share; in the passes without gradient, its `share`) with their indices,
  as torchvision's reference scripts gather results, so every value arrives exactly as it was measured.
  Every rank holds the same vectors and computes the same keep mask; `check_same` compares a digest of it each
  epoch and stops the run if they differ.
- Augmentation draws from a per-rank generator seeded by (seed, rank, epoch); the shuffle stays the shared one.
- Decoding (decoding.py): on each machine local rank 0 decodes the images once into a memory-mapped file named
  for the machine (`node_file`); the others map it after the wait. One process reads the source (N readers of a
  network file system or of one Parquet file would contend, and the sources stream every sample in order), the
  unreadable samples are found in one place, and the page cache holds the pixels once however many processes map
  them. Disk and memory: N x 3 x S x S bytes of uint8 per machine.
- Only rank 0 prepares the output folder, reads and writes checkpoints and outputs and shows progress. Its errors
  (any error, not only labelscrub's) reach the others through `from_main`, so they end at once instead of waiting.
- A process that fails or dies: failures.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from labelscrub.errors import FailedOnMain, LabelscrubError, ReportedElsewhere
from labelscrub.model import pick_device

# How long a collective waits for the other processes before the run stops: a training step waits at most for the
# slowest rank's step and rank 0's checkpoint, far below this.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
# How long the other processes wait for local rank 0 to decode the images (1.28 M ImageNet-sized JPEGs at 224 px:
# about 1.5 hours at the rate BENCHMARKS.md measured on 2 CPU cores) and for rank 0 to read a checkpoint.
DECODE_TIMEOUT = timedelta(hours=6)

T = TypeVar("T")


@dataclass(frozen=True)
class Launch:
    """torchrun's environment for this process."""

    processes: int  # WORLD_SIZE
    rank: int  # RANK, 0..processes-1
    local_rank: int  # LOCAL_RANK: the process's index on its machine, and its GPU
    local_processes: int  # LOCAL_WORLD_SIZE
    node: int  # GROUP_RANK: the machine's index
    restarts: int  # TORCHELASTIC_RESTART_COUNT: how often torchrun has restarted the processes
    max_restarts: int  # TORCHELASTIC_MAX_RESTARTS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Launch | None:
        """The launch torchrun describes in `environ` (default os.environ); None when not started by torchrun."""
        environ = os.environ if environ is None else environ
        if not all(name in environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK")):
            return None
        processes = int(environ["WORLD_SIZE"])
        return cls(processes=processes, rank=int(environ["RANK"]), local_rank=int(environ["LOCAL_RANK"]),
                   local_processes=int(environ.get("LOCAL_WORLD_SIZE", processes)),
                   node=int(environ.get("GROUP_RANK", 0)),
                   restarts=int(environ.get("TORCHELASTIC_RESTART_COUNT", 0)),
                   max_restarts=int(environ.get("TORCHELASTIC_MAX_RESTARTS", 0)))


@dataclass
class GatherStats:
    """What combining measurements across processes cost, and which epochs' keep masks were compared."""

    seconds: float = 0.0
    bytes: int = 0  # bytes of the tensors each process contributes to the all_gathers (rows and values)
    keep_checks: list[int] = field(default_factory=list)  # epochs whose keep masks were identical on every rank


class Processes:
    """This process's place among the run's processes, and the collectives over them."""

    def __init__(self, device: torch.device, launch: Launch | None = None, backend: str | None = None,
                 patient: Any = None):
        self.device = device
        self.launch = launch
        self.backend = backend  # None without torchrun
        self._patient = patient  # a gloo group with DECODE_TIMEOUT, for objects and long waits
        self.stats = GatherStats()

    @classmethod
    def single(cls, device: torch.device | None = None) -> Processes:
        return cls(device or torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.launch is not None

    @property
    def size(self) -> int:
        return 1 if self.launch is None else self.launch.processes

    @property
    def rank(self) -> int:
        return 0 if self.launch is None else self.launch.rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def local_rank(self) -> int:
        return 0 if self.launch is None else self.launch.local_rank

    @property
    def local_size(self) -> int:
        """The processes of this run on this machine."""
        return 1 if self.launch is None else self.launch.local_processes

    @property
    def restarts(self) -> int:
        return 0 if self.launch is None else self.launch.restarts

    # --- sharding ---

    def share(self, rows: np.ndarray) -> np.ndarray:
        """This rank's part of `rows` to measure: every size-th row from its rank on (all rows in one process)."""
        return rows if self.size == 1 else rows[self.rank::self.size]

    def training_share(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """This rank's part of the shuffled `order` to train on, and per row whether it is its first appearance
        (None in one process: all are). `order` is padded by repeating its start to a multiple of the processes,
        so every rank gets ceil(len(order) / size) rows."""
        if self.size == 1:
            return order, None
        padded_length = math.ceil(len(order) / self.size) * self.size
        padded = np.resize(order, padded_length) if len(order) else order
        first = np.arange(padded_length) < len(order)
        return padded[self.rank::self.size], first[self.rank::self.size]

    def augmentation_generator(self, shared: torch.Generator, seed: int, epoch: int) -> torch.Generator:
        """The generator for this epoch's augmentation: the shared one in one process; under torchrun one per
        rank and epoch, so ranks augment differently while their shuffles stay the same, and a resumed run
        augments as the interrupted one would have."""
        if not self.distributed:
            return shared
        stream = np.random.SeedSequence([seed, self.rank, epoch]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(stream))

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module training steps go through: DistributedDataParallel under torchrun, else `model` itself."""
        if not self.distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def summary(self, config: Any) -> dict[str, Any] | None:
        """run.json's "distributed" entry: None in one process."""
        if not self.distributed:
            return None
        epochs = max(1, len(self.stats.keep_checks))
        return {"processes": self.size, "machines": self.size // self.launch.local_processes,
                "backend": self.backend, "batch_size_per_process": config.batch_size,
                "global_batch_size": config.batch_size * self.size, "lr": config.lr,
                "gather_seconds_per_epoch": self.stats.seconds / epochs,
                "gather_bytes_per_epoch": self.stats.bytes // epochs,
                # the epochs whose keep masks every process compared and found identical (this run's, not those
                # before a resume)
                "keep_masks_identical": self.stats.keep_checks}

    # --- collectives ---

    def combine_rows(self, tensors: dict[str, torch.Tensor | None], count: int,
                     measured: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Every rank's measurements of the (count, ...) tensors `tensors`, combined in place: `measured` are the
        rows this rank measured, and every rank's rows are gathered as they are, so each value arrives bit for bit
        (NaN and infinities included). Rows no rank measured keep what the tensors hold. A tensor some ranks have
        not allocated (None) is allocated here, NaN (floats) or -1 (ints). Each row must be measured by at most
        one rank."""
        present = {name: tensor for name, tensor in tensors.items() if tensor is not None}
        if not self.distributed:
            return present
        started = time.perf_counter()
        combined = self._allocate_missing(present, count)
        rows = torch.as_tensor(measured, dtype=torch.int64).to(self.device)
        lengths = self._lengths(len(rows))
        every_rows = self._gather_padded(rows, lengths)
        if sum(lengths) and int(torch.bincount(torch.cat(every_rows), minlength=count).max()) > 1:
            raise ValueError("a row was measured by more than one process; cannot combine the measurements")
        for dtype in sorted({tensor.dtype for tensor in combined.values()}, key=str):
            names = [name for name, tensor in combined.items() if tensor.dtype == dtype]
            widths = [math.prod(combined[name].shape[1:]) for name in names]
            mine = torch.cat([combined[name][rows.to(combined[name].device)].reshape(len(rows), -1)
                              for name in names], dim=1).to(self.device)
            for rank_rows, values in zip(every_rows, self._gather_padded(mine, lengths)):
                for name, piece in zip(names, values.split(widths, dim=1)):
                    target = combined[name]
                    target[rank_rows.to(target.device)] = piece.reshape(-1, *target.shape[1:]).to(target.device)
        self.stats.seconds += time.perf_counter() - started
        return combined

    def _allocate_missing(self, present: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
        """`present` with the tensors other ranks hold but this one has not allocated, unmeasured (NaN or -1)."""
        shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for signature in self.gather_objects({name: (tuple(t.shape), t.dtype) for name, t in present.items()}):
            shapes.update(signature)
        combined = {}
        for name in sorted(shapes):
            shape, dtype = shapes[name]
            if shape[0] != count:
                raise ValueError(f"{name}: {shape} is not one row per sample ({count}); cannot combine it")
            combined[name] = present[name] if name in present else torch.full(
                shape, float("nan") if dtype.is_floating_point else -1, dtype=dtype, device=self.device)
        return combined

    def _lengths(self, length: int) -> list[int]:
        """Every rank's `length`, in rank order."""
        mine = torch.tensor([length], dtype=torch.int64, device=self.device)
        every = [torch.zeros_like(mine) for _ in range(self.size)]
        dist.all_gather(every, mine)
        return [int(value) for value in every]

    def _gather_padded(self, tensor: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """Every rank's `tensor`, whose first dimension is that rank's entry of `lengths`: each is padded to the
        longest for the all_gather, and the padding cut off again."""
        padded = tensor.new_zeros((max(lengths), *tensor.shape[1:]))
        padded[:len(tensor)] = tensor
        every = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(every, padded)
        self.stats.bytes += padded.numel() * padded.element_size()
        return [piece[:length] for piece, length in zip(every, lengths)]

    def broadcast_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) in every rank's `model`. DistributedDataParallel sends
        them before each training forward, so after an epoch's last step each rank holds its own; the passes that
        measure must all use the model rank 0 saves."""
        if not self.distributed:
            return
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)

    def sum(self, values: list[float]) -> list[float]:
        """`values` summed over the ranks (themselves in one process)."""
        if not self.distributed:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def check_same(self, kept: np.ndarray, epoch: int) -> None:
        """Stop with an error unless every rank trains epoch `epoch` on the same samples."""
        if not self.distributed:
            return
        digest = hashlib.sha256(np.packbits(kept).tobytes() + len(kept).to_bytes(8, "little")).digest()
        mine = torch.tensor([int.from_bytes(digest[:8], "little", signed=True)], device=self.device)
        every = [torch.zeros_like(mine) for _ in range(self.size)]
        dist.all_gather(every, mine)
        if len({int(value) for value in every}) > 1:
            raise LabelscrubError(f"epoch {epoch + 1}: the {self.size} processes disagree on which samples to train "
                                  "on; their measurements differ, which is a bug in labelscrub: please report it")
        self.stats.keep_checks.append(epoch)

    def gather_objects(self, value: T) -> list[T]:
        """Every rank's `value` (picklable), in rank order; waits up to DECODE_TIMEOUT."""
        if not self.distributed:
            return [value]
        every: list[Any] = [None] * self.size
        dist.all_gather_object(every, value, group=self._patient)
        return every

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` (picklable) on every rank; waits up to DECODE_TIMEOUT."""
        if not self.distributed:
            return value
        holder = [value if self.is_main else None]
        dist.broadcast_object_list(holder, src=0, group=self._patient)
        return holder[0]

    def from_main(self, make: Callable[[], T]) -> T:
        """`make()` run on rank 0 only (reading or preparing files), its result or its error on every rank."""
        return self._main_first(make, share=True)

    def first_on_main(self, make: Callable[[], T]) -> T:
        """`make()` on rank 0 first and, if it succeeds, on every other rank: an error every rank would meet (bad
        input) is reported once, by rank 0."""
        return self._main_first(make, share=False)

    def _main_first(self, make: Callable[[], T], *, share: bool) -> T:
        if not self.distributed:
            return make()
        outcome: tuple[bool, Any] | None = None
        if self.is_main:
            try:
                value = make()
            except Exception as error:  # any error: the others wait for rank 0's answer, up to DECODE_TIMEOUT
                self.broadcast((False, str(error)))
                raise
            outcome = (True, value if share else None)
        succeeded, sent = self.broadcast(outcome)
        if not succeeded:
            raise FailedOnMain(sent)
        if self.is_main:
            return value
        return sent if share else make()

@contextlib.contextmanager
def start(requested_device: str) -> Iterator[Processes]:
    """The processes of this run, on the device `--device` names (a CUDA device becomes cuda:LOCAL_RANK under
    torchrun); the process group, if any, is closed when the block ends."""
    try:
        device = pick_device(requested_device)
    except RuntimeError:  # not a device name: CleanConfig reports it, through rank 0
        device = torch.device("cpu")
    launch = Launch.from_environment()
    if launch is None:
        yield Processes.single(device)
        return
    if device.type == "mps":
        _refuse_mps(launch, requested_device)
    if device.type == "cuda":
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.processes, timeout=COLLECTIVE_TIMEOUT)
    try:
        patient = dist.new_group(backend="gloo", timeout=DECODE_TIMEOUT)
        yield Processes(device, launch, backend, patient)
    finally:
        dist.destroy_process_group()


def _refuse_mps(launch: Launch, requested_device: str) -> None:
    """torch.distributed has no backend for Apple's MPS (gloo runs on the CPU, nccl on CUDA). Every process of a
    machine meets this alike, so its local rank 0 says it and the others end quietly."""
    chosen = "--device auto chose" if requested_device == "auto" else "--device"
    message = (f"{chosen} Apple's MPS, which torchrun cannot use (no process group runs on MPS); run in one "
               "process, or pass --device cpu to train on the CPU under torchrun")
    raise LabelscrubError(message) if launch.local_rank == 0 else ReportedElsewhere(message)


def node_file(name: str, processes: Processes) -> str:
    """The name of a machine's cache file: one per machine, so machines sharing an output folder never collide."""
    if not processes.distributed:
        return name
    return f"node{processes.launch.node}-{name}"
