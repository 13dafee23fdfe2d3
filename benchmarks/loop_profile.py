"""Where an epoch of `labelscrub clean` goes: the training step, the measurement of left-out samples, augmentation,
batching and recording, timed inside a real run by wrapping those functions of labelscrub.train. Each section's
time is exclusive (a section inside another is not counted twice); the step is what remains of the epoch.

Used by speed_benchmark.py --cpu-loop; exact on the CPU, where every operation finishes before the next starts
(on CUDA the sections would time kernel launches, not work).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import Iterator

import labelscrub.train as train

SECTIONS = ("augmentation", "batching", "left-out measurement", "recording")


class SectionClock:
    """Exclusive wall time per named section: entering a section pauses the one it is nested in."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:
            outer, since = self._stack[-1]
            self.seconds[outer] += now - since
        self._stack.append((name, now))
        try:
            yield
        finally:
            now = time.perf_counter()
            name, since = self._stack.pop()
            self.seconds[name] += now - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], now)

    def timed(self, name: str, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self.section(name):
                return function(*args, **kwargs)
        return wrapper

    def timed_generator(self, name: str, function):
        """Each item of the generator `function` returns is timed as it is produced."""
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            items = function(*args, **kwargs)
            while True:
                with self.section(name):
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                yield item
        return wrapper


@contextlib.contextmanager
def sections_of_training(clock: SectionClock) -> Iterator[None]:
    """Time the sections of every epoch run inside the block (labelscrub.train patched, restored after)."""
    originals = {name: getattr(train, name) for name in ("_augmented", "_measure_without_gradient")}
    batches_of = train.Setup.batches_of
    record = train._Recorder.record
    train._augmented = clock.timed("augmentation", originals["_augmented"])
    train._measure_without_gradient = clock.timed("left-out measurement", originals["_measure_without_gradient"])
    train.Setup.batches_of = clock.timed_generator("batching", batches_of)
    train._Recorder.record = clock.timed("recording", record)
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(train, name, function)
        train.Setup.batches_of = batches_of
        train._Recorder.record = record
