"""What a run measures, as plain records: per sample each epoch (`Probe`), and per epoch (`EpochSummary`).

train.py fills them; the schedule, the estimators (noise, confusion, ranking, suggestions), the checkpoint and the
writers read them. numpy only, so none of those depends on the training module or on torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EpochSummary:
    epoch: int
    rho: float  # the method's target share of withheld samples this epoch (0 for erm)
    trained: int  # samples in this epoch's batches
    dropped: int  # readable samples whose gradient was withheld (left out of batches, or truncated inside them)
    train_loss: float  # mean training cross-entropy over the epoch's batches (augmented)
    # mean measured cross-entropy over all readable samples: from the probe pass, or with loss_pass "train" from
    # the training forward passes (the field keeps its name in run.json)
    probe_loss: float
    heldout_accuracy: float | None
    train_seconds: float
    probe_seconds: float  # the separate probe pass's; 0 with loss_pass "train"
    train_images_per_second: float
    probe_images_per_second: float
    phase: str = "main"  # "warmup-ranking" for the first training of the one-shot method
    # mean measured loss of the samples in this epoch's batches, and of the readable ones left out of them (None
    # when none were): how far apart the two groups are (the audit page draws both)
    kept_loss: float | None = None
    left_out_loss: float | None = None


@dataclass
class Probe:
    """Per-sample measurements of one epoch, from the probe pass or from the training forward passes."""

    losses: np.ndarray  # (N,) float32 cross-entropy of the given label; NaN where not measured
    predicted: np.ndarray  # (N,) int64 argmax class; -1 where not measured
    p_label: np.ndarray  # (N,) float32 probability of the given label; NaN where not measured
    # (N,) float32 log-probability of the best other class minus that of the given label: > 0 where the model
    # prefers another class. NaN where not measured.
    margin: np.ndarray
    probabilities: np.ndarray | None = None  # (N, classes) float32 softmax, only when asked for
    # (N,) float32 cross-entropy of the sample's decoy label (`Setup.decoys`): what this sample's loss would be if
    # its label were wrong. The noise-rate estimate compares the two (noise.py). NaN where not measured.
    decoy_loss: np.ndarray | None = None
    # (N,) float32 mean over all classes of -log p(class): subtracted from a label's loss, how far below the
    # average class the model puts that label, whatever its confidence in the image as a whole (noise.py).
    mean_class_loss: np.ndarray | None = None
