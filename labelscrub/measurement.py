"""What a run measures, as plain records: per sample each epoch (`Probe`), per epoch (`EpochSummary`), and at the
end of a method's training (`TrainingOutcome`).

train.py fills them; the schedule, the estimators (noise, confusion, ranking, suggestions), the checkpoint and the
writers read them. numpy only at run time, so none of those depends on the training module or on torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from labelscrub.confusion import ConfusionEstimate
    from labelscrub.mistakes import MistakeEstimate
    from labelscrub.noise import NoiseEstimate


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
    skipped_steps: int = 0  # training steps left out because a gradient was not finite


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
    # Asked for with `TopClasses`: (N, M) int32 the M classes read per sample (never its given label; -1 where not
    # measured), (N, M) float32 their log-probabilities, and (N,) float32 the log of the mean probability of the
    # classes neither read nor the label (-inf when there are none). NaN where not measured.
    top_classes: np.ndarray | None = None
    top_log_probs: np.ndarray | None = None
    rest_log_prob: np.ndarray | None = None


@dataclass(frozen=True)
class TopClasses:
    """Asks an epoch's measurement for the log-probabilities of `count` classes per sample other than its given
    label, and of the mean of the rest (`Probe.top_classes`): what the confusion estimate reads where every class's
    probability (`Probe.probabilities`) would not fit."""

    count: int
    # (N, count) the classes to read per sample, fixed at the first epoch of the estimate's window so that the
    # window's mean is over the same classes; None: each sample's `count` most likely classes other than its label
    classes: np.ndarray | None = None


@dataclass
class TrainingOutcome:
    """What a method's training leaves for the writers: the model, per-sample histories and final figures."""
    model: torch.nn.Module
    loss_history: np.ndarray  # (epochs, N) float32 probe losses; NaN for samples never probed
    kept_history: np.ndarray  # (epochs, N) bool: True where the sample was in that epoch's batches
    final_kept: np.ndarray  # (N,) bool: the final selection (readable samples only)
    predicted: np.ndarray  # (N,) int64 final prediction, -1 for unreadable samples
    p_label: np.ndarray  # (N,) float32 final probability of the given label
    final_loss: np.ndarray  # (N,) float32 final probe loss
    score: np.ndarray  # (N,) float32 ranking score, higher = more likely mislabeled
    normalization: dict[str, list[float]]
    suggested: np.ndarray  # (N,) int64 suggested label (suggest.py), -1 = no confident suggestion
    suggestion_confidence: np.ndarray  # (N,) float32, NaN where there is no suggestion
    noise: NoiseEstimate | None  # None only when the run ended before the warm-up did
    # With auto, labels found moved from one class to one other (confusion.py); None before the middle of
    # training, in runs too short to have one, and without auto.
    confusion: ConfusionEstimate | None
    confused: np.ndarray  # (N,) bool: dropped as confused; all False without a confusion or dropping (erm)
    rho_max: float  # the drop share of the loss ranking: the user's, or with auto the estimated noise rate
    epochs: list[EpochSummary] = field(default_factory=list)
    # With auto, the plausible-mistake count (mistakes.py), read with the confusion estimate; None where it is
    mistakes: MistakeEstimate | None = None
