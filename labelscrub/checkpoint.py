"""What an epoch-end checkpoint holds, and putting it back: model, optimiser, the generator behind shuffling and
augmentation, the loss and keep history, the last probe, and the method's own state (spl's thresholds, oneshot's
ranking). The learning rate needs no state: it is a pure function of the epoch.

Everything is stored as tensors and plain values, so `torch.load(..., weights_only=True)` reads it back and nothing
in a checkpoint is ever unpickled as code. Writing the file is the caller's job (pipeline), not the loop's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch

from labelscrub.measurement import Probe
from labelscrub.model import cpu_state_dict

# Bump when the layout or the meaning of the state changes; older checkpoints are then refused rather than misread.
# 5: the noise estimate reads epochs 4-6 of a longer warm-up, which a format-4 state had not kept.
# 6: with auto, the log-probabilities of the confusion estimate's window and the confused samples (confusion.py).
# 7: the estimate waits for 4 trained epochs, and may be doubted and capped (noise.doubt_estimate).
FORMAT = 7
# Options that change how fast a run goes, never what it computes: a run may resume with other values.
RESULT_NEUTRAL_OPTIONS = ("device", "loader_workers")


def pack(*, phase: str, epoch: int, setup, history, last, state: dict[str, Any], fingerprint: dict[str, Any]) -> dict:
    """The resumable state after `epoch` (0-based, within `phase`) has finished."""
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "phase": phase,
        "epoch": epoch,
        "model": cpu_state_dict(setup.model),
        "optimizer": setup.optimizer.state_dict(),
        "generator": setup.generator.get_state(),
        "losses": [torch.from_numpy(row) for row in history.losses],
        "kept": [torch.from_numpy(row) for row in history.kept],
        "summaries": [dataclasses.asdict(summary) for summary in history.summaries],
        "last": {"losses": torch.from_numpy(last.losses), "predicted": torch.from_numpy(last.predicted),
                 "p_label": torch.from_numpy(last.p_label), "margin": torch.from_numpy(last.margin)},
        "state": {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                  for key, value in state.items()},
    }


def restore(payload: dict, setup, history, summary_type) -> tuple[int, Any]:
    """Load `payload` into `setup` and `history`; return (first epoch still to run, last probe)."""
    setup.model.load_state_dict(payload["model"])
    setup.optimizer.load_state_dict(payload["optimizer"])
    setup.generator.set_state(payload["generator"])
    history.losses[:] = [row.numpy() for row in payload["losses"]]
    history.kept[:] = [row.numpy() for row in payload["kept"]]
    history.summaries[:] = [summary_type(**summary) for summary in payload["summaries"]]
    last = payload["last"]
    probe = Probe(last["losses"].numpy(), last["predicted"].numpy(), last["p_label"].numpy(), last["margin"].numpy())
    return payload["epoch"] + 1, probe


def method_state(payload: dict) -> dict[str, Any]:
    return {key: value.numpy() if isinstance(value, torch.Tensor) else value
            for key, value in payload["state"].items()}


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
