"""How a run of several processes ends when one of them fails or stops, so that the user reads what happened once
and no process waits for one that is gone.

- A process that fails (an error of its own: bad input, CUDA out of memory, a bug) marks its failure in the
  rendezvous store and raises its error: the one line of a `LabelscrubError`, the cause of any other. The others
  are waiting for it in a collective; that collective fails when the process exits (gloo), or torchrun stops them
  (SIGTERM). They find the mark and end quietly (`ReportedElsewhere`).
- A process that disappears (killed, its machine gone) leaves no mark. The survivors' collectives fail or torchrun
  stops them; they tell which processes stopped by their heartbeats and the lowest survivor reports them
  (`ProcessStopped`).

Heartbeats: a thread of each process counts its key up in the store every BEAT_SECONDS, also while the main thread
waits in a collective, so a process that is waiting is never taken for one that stopped. A process that ends
quietly marks that it left, so nobody takes it for stopped either. The store lives in torchrun's agent on the
first machine; when it cannot be reached, nobody can tell who stopped ("another process stopped").
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import torch.distributed as dist

from labelscrub.distributed import Processes
from labelscrub.errors import LabelscrubError, ProcessStopped, ReportedElsewhere

# How often each process counts its heartbeat up.
BEAT_SECONDS = 0.5
# How long a process watches the others' heartbeats before it calls one whose count did not move stopped: several
# beats, so a process busy on a loaded machine is not taken for stopped.
ANSWER_SECONDS = 3.0
# How long a request to the store may take before the store counts as gone (with it, the first machine's agent).
STORE_TIMEOUT = timedelta(seconds=30)


@contextlib.contextmanager
def watching(processes: Processes) -> Iterator[None]:
    """Run the block with a heartbeat; when it raises, end as the module docstring says: this process's own error
    as it is (marked in the store), `ReportedElsewhere` when another process failed and said so, `ProcessStopped`
    when one disappeared."""
    if not processes.distributed:
        yield
        return
    store = _Store.connect(processes)
    heart = _Heartbeat(store, processes.rank)

    def terminated(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except BaseException as error:
        # torchrun's SIGTERM often follows a failed collective: it must not cut the decision or the message short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        instead = _ending(error, store, processes)
        if instead is not None:
            raise instead from None
        raise
    else:
        signal.signal(signal.SIGTERM, previous)
    finally:
        heart.stop()


def _ending(error: BaseException, store: _Store | None, processes: Processes) -> BaseException | None:
    """What this process ends with after `error`: None for `error` itself, else the error to raise instead."""
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return None
    if isinstance(error, ReportedElsewhere):
        if store is not None:
            store.mark("left", processes.rank)
        return None
    if store is None:
        return ProcessStopped(None, processes.size, reporter=True) if _maybe_a_peer(error) else None
    if not _maybe_a_peer(error) and not store.others_marked("failed", processes.rank, processes.size):
        store.mark("failed", processes.rank)
        return None
    stopped = store.stopped(processes.size) if _maybe_a_peer(error) else []
    failed = store.others_marked("failed", processes.rank, processes.size)
    if failed:
        return ReportedElsewhere(f"process {failed[0]} failed")
    if stopped == [] and not isinstance(error, _Terminated):
        store.mark("failed", processes.rank)  # every process answers: the error is this one's own
        return None
    survivors = sorted(set(range(processes.size)) - set(stopped or []))
    return ProcessStopped(stopped, processes.size, reporter=not survivors or survivors[0] == processes.rank)


def _maybe_a_peer(error: BaseException) -> bool:
    """Whether `error` may come from another process: a collective fails with a RuntimeError when its peer is
    gone (gloo says "Connection closed by peer", nccl raises DistBackendError), and torchrun's SIGTERM stops a
    survivor. Any other error, and labelscrub's own, is this process's."""
    return isinstance(error, _Terminated) or isinstance(error, RuntimeError) and not isinstance(error, LabelscrubError)


class _Store:
    """This run's keys in torchrun's rendezvous store, through a connection of their own (the heartbeat thread
    and the main thread share it under a lock)."""

    def __init__(self, client, prefix: str):
        self._client, self._prefix, self._lock = client, prefix, threading.Lock()

    @classmethod
    def connect(cls, processes: Processes) -> _Store | None:
        """None when the store cannot be reached (or torchrun did not say where it is)."""
        try:
            client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                   timeout=STORE_TIMEOUT, wait_for_workers=False)
        except (KeyError, ValueError, RuntimeError):
            return None
        return cls(client, f"labelscrub/{processes.restarts}/")

    def count(self, what: str, rank: int, by: int = 0) -> int:
        with self._lock:
            return self._client.add(f"{self._prefix}{what}/{rank}", by)

    def mark(self, what: str, rank: int) -> None:
        with contextlib.suppress(RuntimeError):
            self.count(what, rank, 1)

    def has(self, what: str, rank: int) -> bool:
        return self.count(what, rank) > 0

    def others_marked(self, what: str, rank: int, size: int) -> list[int]:
        try:
            return [other for other in range(size) if other != rank and self.has(what, other)]
        except RuntimeError:
            return []

    def stopped(self, size: int) -> list[int] | None:
        """The processes whose heartbeat does not move within ANSWER_SECONDS and that did not leave; None when
        the store stops answering."""
        try:
            before = [self.count("beat", rank) for rank in range(size)]
            time.sleep(ANSWER_SECONDS)
            after = [self.count("beat", rank) for rank in range(size)]
            return [rank for rank in range(size) if after[rank] == before[rank] and not self.has("left", rank)]
        except RuntimeError:
            return None


class _Heartbeat:
    """A thread counting this process's heartbeat up every BEAT_SECONDS until `stop`."""

    def __init__(self, store: _Store | None, rank: int):
        self._store, self._rank, self._done = store, rank, threading.Event()
        if store is not None:
            self._beat_once()
            threading.Thread(target=self._run, name="labelscrub-heartbeat", daemon=True).start()

    def _beat_once(self) -> bool:
        try:
            self._store.count("beat", self._rank, 1)
            return True
        except RuntimeError:  # the store is gone: there is nobody left to tell
            return False

    def _run(self) -> None:
        while not self._done.wait(BEAT_SECONDS) and self._beat_once():
            pass

    def stop(self) -> None:
        self._done.set()


class _Terminated(BaseException):
    """SIGTERM from torchrun: another process failed and this one is being stopped."""
