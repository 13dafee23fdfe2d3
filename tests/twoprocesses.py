"""Two real gloo processes for the tests of what labelscrub does under torchrun, started as torchrun starts them:
the rendezvous store is hosted here, as torchrun's agent hosts it, on a port the system picks and the store keeps
(no free port guessed and lost to another program in between), and it outlives a process that fails."""

import multiprocessing
import os
import pickle
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.distributed as dist
from test_methods import small_network

from labelscrub.distributed import start


@dataclass
class Outcome:
    value: Any = None  # what the work returned
    error: str | None = None  # "TypeName: message" of what it raised instead
    stderr: str = ""  # what the process wrote to sys.stderr (click's "Error: ..." lines)


def in_two_processes(work, folder: Path, *, process_group: bool = True, timeout: float = 120,
                     **environment: str) -> list[Outcome]:
    """Run `work` in 2 spawned processes, by rank: `work(processes)` inside `start("cpu")` with `process_group`,
    else `work(rank)` (the work starts its own, as `clean` does). ResNet-18 is replaced by a small network. A
    process still running after `timeout` seconds is killed and the test fails."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(work, rank, store.port, folder, process_group, environment))
                for rank in range(2)]
    for child in children:
        child.start()
    deadline = time.monotonic() + timeout
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
    hung = [rank for rank, child in enumerate(children) if child.is_alive()]
    for rank in hung:
        children[rank].kill()
        children[rank].join()
    assert not hung, f"process {hung} still ran after {timeout} s"
    crashed = [rank for rank in range(2) if not (folder / f"rank{rank}.pickle").exists()]
    assert not crashed, f"process {crashed} ended without an outcome (exit codes {[c.exitcode for c in children]})"
    return [pickle.loads((folder / f"rank{rank}.pickle").read_bytes()) for rank in range(2)]


def values(outcomes: list[Outcome]) -> list[Any]:
    """The values each process returned; fails the test with the error of one that raised."""
    for rank, outcome in enumerate(outcomes):
        assert outcome.error is None, f"rank {rank}: {outcome.error}"
    return [outcome.value for outcome in outcomes]


def _child(work, rank: int, port: int, folder: Path, process_group: bool, environment: dict[str, str]) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True",
                      OMP_NUM_THREADS="1", **environment)
    torch.set_num_threads(1)
    stderr_path = folder / f"rank{rank}.stderr"
    outcome = Outcome()
    with open(stderr_path, "w") as stderr, mock.patch.object(sys, "stderr", stderr), \
            mock.patch("labelscrub.train.build_model", small_network):
        try:
            if process_group:
                with start("cpu") as processes:
                    outcome.value = work(processes)
            else:
                outcome.value = work(rank)
        except BaseException as error:  # SystemExit from the command line included
            outcome.error = f"{type(error).__name__}: {error}"
            traceback.print_exc(file=stderr)
    outcome.stderr = stderr_path.read_text()
    (folder / f"rank{rank}.pickle").write_bytes(pickle.dumps(outcome))
