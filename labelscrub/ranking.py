"""The suspicion score that ranks samples for dropping: pure functions of the per-epoch measurements.

`rank_by` picks what is measured (`loss`: cross-entropy of the given label; `margin`: log-probability of the best
other class minus that of the given label, which does not punish a hard sample the model is unsure about as much
as one it confidently assigns elsewhere). `smoothing` averages it across epochs with an exponential moving average.
"""

from __future__ import annotations

import numpy as np

from labelscrub.measurement import Probe


def epoch_value(measured: Probe, rank_by: str) -> np.ndarray:
    return measured.losses if rank_by == "loss" else measured.margin


def updated_score(previous: np.ndarray | None, measured: Probe, *, rank_by: str, smoothing: float) -> np.ndarray:
    """score_t = smoothing * score_{t-1} + (1 - smoothing) * value_t; a sample not measured this epoch (NaN) keeps
    its previous score."""
    return moving_average(previous, epoch_value(measured, rank_by), smoothing)


def moving_average(previous: np.ndarray | None, value: np.ndarray, smoothing: float) -> np.ndarray:
    """smoothing x previous + (1 - smoothing) x value, elementwise; NaN on either side takes the other."""
    value = value.astype(np.float32)
    if previous is None or smoothing == 0.0:
        return value
    blended = smoothing * previous + (1.0 - smoothing) * value
    return np.where(np.isnan(value), previous, np.where(np.isnan(previous), value, blended)).astype(np.float32)
