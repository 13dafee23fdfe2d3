"""Which samples train when: Step-E and the methods it is compared with, all built from `train.py`'s pieces.

Every method measures every readable sample in every epoch (so each report has the same loss trajectories; how
is `CleanConfig.loss_pass`, see train.py) and ends with a keep mask, the final selection, and a ranking score. For
stepe, erm and truncation the score is `ranking.updated_score` of the measurements (a moving average of the margins
by default); spl and oneshot rank by their own losses (below). The selection rule is `schedule.select_kept`, over
all samples or per class (`CleanConfig.select`):

- stepe: before epoch t, the ceil(rho_t * N) highest scores after epoch t-1 are left out of the batches; rho_t
  follows `schedule.rho_at`. Final selection: the same rule on the last score with the last rho.
- erm: plain training on everything; nothing is dropped. The score is a ranking only.
- truncation: loss truncation; inside every batch the ceil(rho_t * B) highest losses get no gradient. Final
  selection as stepe.
- spl: self-paced learning; after the warm-up a sample trains only while its last loss is below lambda_t.
  lambda starts at the (1 - rho_max) quantile of the losses after the warm-up and grows by SPL_GROWTH per epoch.
  Final selection: samples whose last loss is below the last lambda. Score: the last loss.
- oneshot: train plainly for the warm-up epochs, rank once by that model's probe losses, drop the top rho_max for
  good, then train a fresh model on the rest for the full schedule. Score: the ranking losses. Its trajectories
  hold the ranking run's epochs followed by the fresh run's.

Each method is a loop over epochs; `_stepe` spells out one epoch (select, train and measure, score, record), the
others run the same steps through `_epoch`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import labelscrub.checkpoint as checkpoint
from labelscrub.config import METHOD_NAMES
from labelscrub.measurement import EpochSummary, Probe, TrainingOutcome
from labelscrub.task import SampleState, Task
from labelscrub.train import EpochTraining, Setup, heldout_accuracy, probe, train_epoch

# Self-paced learning: growth of the loss threshold per epoch (x1.1: all samples are back within ~25 epochs of a
# typical loss spread, the classic annealing of SPL).
SPL_GROWTH = 1.1


def _mean_loss(losses: np.ndarray, members: np.ndarray) -> float | None:
    measured = losses[members]
    measured = measured[~np.isnan(measured)]
    return float(measured.mean()) if len(measured) else None


@dataclass
class _History:
    losses: list[np.ndarray] = field(default_factory=list)
    kept: list[np.ndarray] = field(default_factory=list)
    summaries: list[EpochSummary] = field(default_factory=list)


@dataclass(frozen=True)
class _Phase:
    """One training of a method as far as it has gone: its model, the history, the per-sample state and the last
    epoch's measurements."""

    name: str  # "main", or oneshot's "warmup-ranking"
    setup: Setup
    history: _History
    samples: SampleState
    last: Probe | None = None  # None before the first epoch
    first: int = 0  # the first epoch still to run


@dataclass(frozen=True)
class _Measured:
    training: EpochTraining
    probe: Probe  # every readable sample's measurement of the epoch
    probe_seconds: float  # the separate probe pass; 0 when the training pass measured


def _begin(task: Task, name: str, samples: SampleState, history: _History) -> _Phase:
    """A fresh model for phase `name`, or the model and state of the checkpoint an interrupted run wrote in it."""
    setup = task.fresh_setup()
    if task.resume_phase() == name:
        first, last = checkpoint.restore(task.resume, setup, history)
        return _Phase(name, setup, history, task.initial_samples(), last, first)
    return _Phase(name, setup, history, samples.restarted())


def _stepe(task: Task) -> TrainingOutcome:
    config = task.config
    phase = _begin(task, "main", task.initial_samples(), _History())
    for epoch in range(phase.first, config.epochs):
        samples = phase.samples
        # Select: before epoch t, the ceil(rho_t * N) highest scores after epoch t-1 are left out (nothing before
        # anything is measured).
        rho = task.rho(epoch, samples)
        kept = task.eligible.copy() if phase.last is None else task.select(samples.score, task.ramp_share(epoch),
                                                                           samples)
        # Train on the kept samples, measuring every readable one.
        measured = _train_and_measure(task, phase, epoch, kept)
        # Score: fold the measurements into the score, the suggestions and the estimates.
        samples = task.updated(samples, epoch, measured.probe)
        phase = _recorded(task, phase, epoch, kept, measured, samples, rho)
    final = task.select(phase.samples.score, task.ramp_share(config.epochs - 1), phase.samples)
    return _outcome(task, phase, final, phase.samples.score)


def _epoch(task: Task, phase: _Phase, epoch: int, kept: np.ndarray, *, rho: float | None,
           truncate: bool = False) -> _Phase:
    """One epoch of a method that chose `kept`: train (with `truncate`, withholding rho inside each batch) and
    measure, fold the measurements into the per-sample state, record. `rho` None: the share actually left out."""
    measured = _train_and_measure(task, phase, epoch, kept, truncate_rho=rho if truncate and rho else 0.0)
    samples = task.updated(phase.samples, epoch, measured.probe)
    return _recorded(task, phase, epoch, kept, measured, samples, rho)


def _train_and_measure(task: Task, phase: _Phase, epoch: int, kept: np.ndarray, *,
                       truncate_rho: float = 0.0) -> _Measured:
    config = task.config
    with_probabilities = task.wants_probabilities(phase.samples, epoch)
    top = task.wants_top_classes(phase.samples, epoch)
    training = train_epoch(
        phase.setup, kept, epoch, schedule_epochs=config.epochs, truncate_rho=truncate_rho,
        record=task.eligible if config.loss_pass == "train" else None, keep_probabilities=with_probabilities, top=top,
        progress=task.progress)
    if training.measured is not None:
        return _Measured(training, training.measured, 0.0)
    started = time.perf_counter()  # the paper's separate probe pass
    measured = probe(phase.setup, task.pixels, task.labels, np.flatnonzero(task.eligible),
                     keep_probabilities=with_probabilities, top=top)
    return _Measured(training, measured, time.perf_counter() - started)


def _recorded(task: Task, phase: _Phase, epoch: int, kept: np.ndarray, measured: _Measured, samples: SampleState,
              rho: float | None) -> _Phase:
    """Append the epoch to the history, tell the user, hand the checkpoint over; the phase after the epoch."""
    readable = int(task.eligible.sum())
    last, training = measured.probe, measured.training
    trained = int(kept.sum())
    left_out = readable - trained + training.truncated
    summary = EpochSummary(
        epoch=epoch, rho=rho if rho is not None else left_out / max(1, readable),
        trained=trained, dropped=left_out, train_loss=training.mean_loss,
        probe_loss=float(np.nanmean(last.losses)) if readable else float("nan"),
        heldout_accuracy=heldout_accuracy(phase.setup, task.heldout), train_seconds=training.seconds,
        probe_seconds=measured.probe_seconds, train_images_per_second=trained / max(training.seconds, 1e-9),
        probe_images_per_second=readable / measured.probe_seconds if measured.probe_seconds else 0.0,
        phase=phase.name, kept_loss=_mean_loss(last.losses, task.eligible & kept),
        left_out_loss=_mean_loss(last.losses, task.eligible & ~kept), skipped_steps=training.skipped_steps)
    phase.history.losses.append(last.losses)
    phase.history.kept.append(kept)
    phase.history.summaries.append(summary)
    # saved before the epoch is announced: once the user sees it finished, it can be resumed from
    if task.on_checkpoint is not None:
        task.on_checkpoint(checkpoint.pack(phase=phase.name, epoch=epoch, setup=phase.setup, history=phase.history,
                                           last=last, state=samples.to_state(), fingerprint=task.fingerprint))
    task.progress.epoch_done(summary, task.config.epochs)
    return dataclasses.replace(phase, samples=samples, last=last, first=epoch + 1)


def _outcome(task: Task, phase: _Phase, final_kept: np.ndarray, score: np.ndarray) -> TrainingOutcome:
    samples, history = phase.samples, phase.history
    assert phase.last is not None
    suggested, confidence = samples.suggestions.suggestions(min_confidence=task.config.suggest_confidence)
    confused = np.zeros_like(final_kept) if samples.confused is None else samples.confused
    return TrainingOutcome(
        model=phase.setup.model, loss_history=np.stack(history.losses), kept_history=np.stack(history.kept),
        final_kept=final_kept, predicted=phase.last.predicted, p_label=phase.last.p_label,
        final_loss=phase.last.losses, score=score, normalization=phase.setup.normalization, suggested=suggested,
        suggestion_confidence=confidence, noise=samples.noise, mistakes=samples.mistakes,
        confusion=samples.confusion, confused=confused & ~final_kept, rho_max=task.rho_max(samples),
        epochs=history.summaries)


def _erm(task: Task) -> TrainingOutcome:
    phase = _begin(task, "main", task.initial_samples(), _History())
    for epoch in range(phase.first, task.config.epochs):
        phase = _epoch(task, phase, epoch, task.eligible.copy(), rho=0.0)
    return _outcome(task, phase, task.eligible.copy(), phase.samples.score)


def _truncation(task: Task) -> TrainingOutcome:
    config = task.config
    phase = _begin(task, "main", task.initial_samples(), _History())
    for epoch in range(phase.first, config.epochs):
        phase = _epoch(task, phase, epoch, task.eligible.copy(), rho=task.rho(epoch, phase.samples), truncate=True)
    final = task.select(phase.samples.score, task.ramp_share(config.epochs - 1), phase.samples)
    return _outcome(task, phase, final, phase.samples.score)


def _spl(task: Task) -> TrainingOutcome:
    config = task.config
    phase = _begin(task, "main", task.initial_samples(), _History())
    for epoch in range(phase.first, config.epochs):
        kept = task.eligible.copy()
        if phase.last is not None and epoch >= config.warmup:
            thresholds = phase.samples.spl_threshold  # lambda_t of the epochs after the warm-up
            if thresholds:
                threshold = thresholds[-1] * SPL_GROWTH
            else:
                threshold = float(np.quantile(phase.last.losses[task.eligible], 1.0 - task.rho_max(phase.samples)))
            kept = task.eligible & (phase.last.losses < threshold)
            phase = dataclasses.replace(phase, samples=dataclasses.replace(
                phase.samples, spl_threshold=(*thresholds, threshold)))
        phase = _epoch(task, phase, epoch, kept, rho=None)
    thresholds = phase.samples.spl_threshold
    final = task.eligible & (phase.last.losses < thresholds[-1]) if thresholds else task.eligible.copy()
    return _outcome(task, phase, final, phase.last.losses)


def _oneshot(task: Task) -> TrainingOutcome:
    config = task.config
    samples, history = task.initial_samples(), _History()
    if task.resume_phase() != "main":
        ranking = _begin(task, "warmup-ranking", samples, history)
        for epoch in range(ranking.first, max(1, config.warmup)):  # ranking with an untrained network would be noise
            ranking = _epoch(task, ranking, epoch, task.eligible.copy(), rho=0.0)
        losses = ranking.last.losses
        samples = dataclasses.replace(ranking.samples, ranking_losses=losses,
                                      kept_once=task.select(losses, 1.0, ranking.samples))
        del ranking  # its model goes before the fresh one is made
    phase = _begin(task, "main", samples, history)
    kept_once = phase.samples.kept_once
    for epoch in range(phase.first, config.epochs):
        phase = _epoch(task, phase, epoch, kept_once.copy(), rho=task.rho_max(phase.samples))
    return _outcome(task, phase, kept_once, phase.samples.ranking_losses)


METHODS: dict[str, Callable[[Task], TrainingOutcome]] = {
    "stepe": _stepe, "erm": _erm, "truncation": _truncation, "spl": _spl, "oneshot": _oneshot,
}
assert tuple(METHODS) == METHOD_NAMES


def train_with_method(task: Task) -> TrainingOutcome:
    return METHODS[task.config.method](task)
