"""How a run of several processes ends when one of them fails or stops: `watching` turns another process's death
into `ProcessStopped` (errors.py).

A process that dies: the others fail in their next collective, or torchrun stops them (SIGTERM); `watching` turns
either into `ProcessStopped`, naming the processes that stopped (they are the ones that do not answer in the
rendezvous store). An error one process meets while every process still answers is raised as it is.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import torch.distributed as dist

from labelscrub.distributed import Processes
from labelscrub.errors import ProcessStopped

# How long a process that saw another stop waits for the survivors to answer in the rendezvous store.
ANSWER_SECONDS = 3.0


@contextlib.contextmanager
def watching(processes: Processes) -> Iterator[None]:
    """Turn another process's death into `ProcessStopped`: the error a collective raises when its peer is
    gone, or the SIGTERM with which torchrun stops the survivors. An error while every process still answers
    is raised as it is."""
    if not processes.distributed:
        yield
        return

    def terminated(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except (_Terminated, RuntimeError) as error:
        # torchrun's SIGTERM often follows a failed collective: it must not cut the message short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopped = _stopped_ranks(processes)
        if isinstance(error, RuntimeError) and stopped == []:
            signal.signal(signal.SIGTERM, previous)
            raise
        survivors = sorted(set(range(processes.size)) - set(stopped or []))
        raise ProcessStopped(stopped, processes.size,
                             reporter=not survivors or survivors[0] == processes.rank) from None
    except BaseException:
        signal.signal(signal.SIGTERM, previous)
        raise
    else:
        signal.signal(signal.SIGTERM, previous)


def _stopped_ranks(processes: Processes) -> list[int] | None:
    """The ranks that do not mark themselves alive in the rendezvous store within ANSWER_SECONDS; None when
    the store cannot be reached (it lives in the torchrun agent of the first machine)."""
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(timedelta(seconds=ANSWER_SECONDS))
        prefix = f"labelscrub-alive/{processes.restarts}/"
        store.set(f"{prefix}{processes.rank}", "1")
        deadline = time.monotonic() + ANSWER_SECONDS
        while True:
            missing = [rank for rank in range(processes.size) if not store.check([f"{prefix}{rank}"])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)
    except Exception:  # the store went with a dead process, or never existed: nobody can tell who stopped
        return None


class _Terminated(BaseException):
    """SIGTERM from torchrun: another process failed and this one is being stopped."""
