"""Epoch-end checkpoints, `checkpoint.pt` in the output folder: what they hold, writing and reading them, and
putting them back.

Every checkpoint holds the training state (model, optimiser, the generator behind shuffling and augmentation) with
the phase and epoch it was written after, and the fingerprint of the run that wrote it. A clean run's adds the
loss and keep history, the last probe and the method's per-sample state (methods.SampleState); a retrain's adds
the trainings it has finished. The learning rate needs no state: it is a pure function of the epoch.

Everything is stored as tensors and plain values, so `torch.load(..., weights_only=True)` reads it back and nothing
in a checkpoint is ever unpickled as code. The training loops never write: they hand the packed state to a
callback, and `clean` and `retrain` save it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelscrub.atomic import atomic_path
from labelscrub.distributed import Processes
from labelscrub.errors import LabelscrubError, ReportedElsewhere
from labelscrub.measurement import EpochSummary, Probe
from labelscrub.model import cpu_state_dict

CHECKPOINT_NAME = "checkpoint.pt"  # written after every epoch, removed when the run completes
# Bump when the layout or the meaning of the state changes; older checkpoints are then refused rather than misread.
FORMAT = 10
# Options that change how fast a run goes, never what it computes: a run may resume with other values.
RESULT_NEUTRAL_OPTIONS = ("device", "loader_workers")


def save(out_dir: Path, payload: dict) -> None:
    with atomic_path(out_dir / CHECKPOINT_NAME) as temporary:
        torch.save(payload, temporary)


def load(out_dir: Path, current_fingerprint: dict) -> dict:
    """The checkpoint in `out_dir`, refused with the differences named when it belongs to another run."""
    path = out_dir / CHECKPOINT_NAME
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged or foreign file: say so instead of a pickle traceback
        raise LabelscrubError(f"{path}: cannot read the checkpoint ({type(error).__name__}); run again without "
                              "--resume (use --overwrite)") from None
    problems = mismatch(saved["fingerprint"], current_fingerprint)
    if saved.get("format") != FORMAT or problems:
        raise LabelscrubError(f"{path}: cannot resume, the run differs ({'; '.join(problems) or 'older format'}); "
                              "pass the same input and options, or start again with --overwrite")
    return saved


def remove(out_dir: Path) -> None:
    """Called once every output is in place: nothing is left to resume."""
    (out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)


def pack_training(*, phase: str, epoch: int, setup, fingerprint: dict[str, Any]) -> dict:
    """The training state after `epoch` (0-based, within `phase`) has finished, as every checkpoint holds it."""
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "phase": phase,
        "epoch": epoch,
        "model": cpu_state_dict(setup.model),
        "optimizer": setup.optimizer.state_dict(),
        "generator": setup.generator.get_state(),
        # what a resume on another number of processes keeps (`keep_global_batch`)
        "global_batch": setup.config.batch_size * setup.processes.size,
        "lr": setup.config.lr,
    }


def restore_training(payload: dict, setup) -> int:
    """Load the training state of `payload` into `setup`; return the first epoch still to run."""
    setup.model.load_state_dict(payload["model"])
    setup.optimizer.load_state_dict(payload["optimizer"])
    setup.generator.set_state(payload["generator"])
    return payload["epoch"] + 1


def pack(*, phase: str, epoch: int, setup, history, last, state: dict[str, Any], fingerprint: dict[str, Any]) -> dict:
    """A clean run's resumable state after `epoch` (0-based, within `phase`) has finished."""
    return {
        **pack_training(phase=phase, epoch=epoch, setup=setup, fingerprint=fingerprint),
        "losses": [torch.from_numpy(row) for row in history.losses],
        "kept": [torch.from_numpy(row) for row in history.kept],
        "summaries": [dataclasses.asdict(summary) for summary in history.summaries],
        "last": {"losses": torch.from_numpy(last.losses), "predicted": torch.from_numpy(last.predicted),
                 "p_label": torch.from_numpy(last.p_label), "margin": torch.from_numpy(last.margin)},
        "state": {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                  for key, value in state.items()},
    }


def restore(payload: dict, setup, history) -> tuple[int, Probe]:
    """Load `payload` into `setup` and `history`; return (first epoch still to run, last probe)."""
    first = restore_training(payload, setup)
    history.losses[:] = [row.numpy() for row in payload["losses"]]
    history.kept[:] = [row.numpy() for row in payload["kept"]]
    history.summaries[:] = [EpochSummary(**summary) for summary in payload["summaries"]]
    last = payload["last"]
    probe = Probe(last["losses"].numpy(), last["predicted"].numpy(), last["p_label"].numpy(), last["margin"].numpy())
    return first, probe


def method_state(payload: dict) -> dict[str, Any]:
    return {key: value.numpy() if isinstance(value, torch.Tensor) else value
            for key, value in payload["state"].items()}


def as_given(config, given) -> dict[str, Any]:
    """The resolved `config` as a fingerprint holds it: the learning rate as `given` (the unresolved config) has it,
    None for the default, which follows the number of processes; so a checkpoint resumes on any number of
    processes (`batch_size` is per process, as given; `keep_global_batch` says what a resume trains with)."""
    return {**config.to_dict(), "lr": given.lr}


def keep_global_batch(config, saved: dict | None, processes: int):
    """The resolved `config` to continue the checkpoint `saved` with on `processes` processes: the interrupted
    run's global batch (samples per step over every process) and learning rate, its global batch shared among
    `processes`. Without this, 8 processes resumed on 1 would take steps 8 times smaller at an eighth of the
    learning rate in the middle of the schedule. Refused when `processes` cannot share the global batch equally."""
    if saved is None:
        return config
    global_batch = saved["global_batch"]
    if global_batch % processes:
        raise LabelscrubError(f"cannot resume on {processes} processes: the run trains with a global batch of "
                              f"{global_batch} samples per step, which {processes} processes cannot share equally; "
                              f"resume on a number of processes that divides {global_batch}")
    return dataclasses.replace(config, batch_size=global_batch // processes, lr=saved["lr"])


def check_same_everywhere(current: dict[str, Any], processes: Processes) -> None:
    """Stop unless every process has the fingerprint `current`: each process opens DATA on its own machine, and
    one that sees other files, labels or options would train on other samples. Rank 0 names the first process
    that differs; the others end quietly."""
    every = processes.gather_objects(current)
    differing = [rank for rank, theirs in enumerate(every) if theirs != every[0]]
    if not differing:
        return
    first, theirs = every[0], every[differing[0]]
    parts = (["the DATA path"] if first["data"] != theirs["data"] else []) + (
        ["the samples or their labels"] if first["samples"] != theirs["samples"] else []) + [
        f"--{key.replace('_', '-')}" for key in sorted(set(first["config"]) | set(theirs["config"]))
        if first["config"].get(key) != theirs["config"].get(key)]
    others = f" (and {len(differing) - 1} more)" if len(differing) > 1 else ""
    message = (f"process {differing[0]} of {processes.size}{others} does not read what process 0 reads "
               f"({', '.join(parts)} differ); every process must see DATA at the same path, with the same files, "
               "and get the same options")
    raise LabelscrubError(message) if processes.is_main else ReportedElsewhere(message)


def fingerprint(*, data: str, config: dict[str, Any], sample_ids: list[str], labels: np.ndarray) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: the data, its labels and every option that can change the
    result (not the device, nor how batches are loaded)."""
    digest = hashlib.sha256()
    for sample_id in sample_ids:
        digest.update(sample_id.encode("utf-8", "backslashreplace") + b"\0")
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return {"data": data, "samples": hashlib.sha256(digest.digest()).hexdigest(),
            "config": {key: value for key, value in config.items() if key not in RESULT_NEUTRAL_OPTIONS}}


def mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when the run can resume)."""
    problems = []
    if saved["data"] != current["data"]:
        problems.append(f"data was {saved['data']}")
    if saved["samples"] != current["samples"]:
        problems.append("the samples or their labels changed")
    for key in sorted(set(saved["config"]) | set(current["config"])):
        if saved["config"].get(key) != current["config"].get(key):
            problems.append(f"{key} was {saved['config'].get(key)!r}, now {current['config'].get(key)!r}")
    return problems
