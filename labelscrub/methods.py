"""Which samples train when: Step-E and the methods it is compared with, all built from `train.py`'s pieces.

Every method measures every readable sample in every epoch (so each report has the same loss trajectories; how
is `CleanConfig.loss_pass`, see train.py) and ends with a keep mask, the final selection, and a ranking score. The
score is `ranking.updated_score` of the measurements (a moving average of the losses by default); the selection
rule is `schedule.select_kept`, over all samples or per class (`CleanConfig.select`):

- stepe: before epoch t, the ceil(rho_t * N) highest scores after epoch t-1 are left out of the batches; rho_t
  follows `schedule.rho_at`. Final selection: the same rule on the last score with the last rho.
- erm: plain training on everything; nothing is dropped. The score is a ranking only.
- truncation: loss truncation; inside every batch the ceil(rho_t * B) highest losses get no gradient. Final
  selection as stepe.
- spl: self-paced learning; after the warm-up a sample trains only while its last loss is below lambda_t.
  lambda starts at the (1 - rho_max) quantile of the losses after the warm-up and grows by SPL_GROWTH per epoch.
  Final selection: samples whose last loss is below the last lambda.
- oneshot: train plainly for the warm-up epochs, rank once by that model's probe losses, drop the top rho_max for
  good, then train a fresh model on the rest for the full schedule. Score: the ranking losses. Its trajectories
  hold the ranking run's epochs followed by the fresh run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from labelscrub import checkpoint
from labelscrub.config import METHOD_NAMES, CleanConfig
from labelscrub.confusion import (
    ConfusionEstimate,
    confused_samples,
    confusion_epochs,
    estimate_confusion,
    fits_in_memory,
)
from labelscrub.measurement import EpochSummary, Probe
from labelscrub.noise import (
    EVIDENCE_EPOCHS,
    NoiseEstimate,
    doubt_estimate,
    evidence_epochs,
    label_depth,
    last_read_epoch,
    read_estimate,
)
from labelscrub.progress import Progress
from labelscrub.ranking import updated_score
from labelscrub.schedule import rho_at, select_kept
from labelscrub.suggest import SuggestionTracker
from labelscrub.train import (
    Setup,
    decoy_labels,
    heldout_accuracy,
    make_setup,
    probe,
    train_epoch,
)

# Self-paced learning: growth of the loss threshold per epoch (x1.1: all samples are back within ~25 epochs of a
# typical loss spread, the classic annealing of SPL).
SPL_GROWTH = 1.1


@dataclass
class TrainingOutcome:
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
    rho_max: float  # the drop share of the loss ranking: the user's, or with auto the decoy estimate
    epochs: list[EpochSummary] = field(default_factory=list)


@dataclass
class Task:
    """What every method gets: the decoded data, the readable-and-labelled mask and the resolved config."""

    pixels: torch.Tensor
    labels: np.ndarray
    sample_ids: list[str]
    eligible: np.ndarray
    num_classes: int
    config: CleanConfig
    device: torch.device
    heldout: tuple[torch.Tensor, np.ndarray] | None = None
    progress: Progress = field(default_factory=Progress)
    # Resuming: `on_checkpoint` receives the packed state after every epoch; `resume` is a checkpoint to continue
    # from (it is used by the phase it was written in, then dropped); `state` is the method's own resumable state.
    on_checkpoint: Callable[[dict], None] | None = None
    resume: dict | None = None
    fingerprint: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.resume is not None:
            self.state.update(checkpoint.method_state(self.resume))

    def resume_phase(self) -> str | None:
        return None if self.resume is None else self.resume["phase"]

    def fresh_setup(self) -> Setup:
        return make_setup(self.pixels, self.labels, self.eligible, self.num_classes, self.config, self.device)

    @property
    def noise(self) -> NoiseEstimate | None:
        """The noise-rate estimate, made from the warm-up epochs (None until then)."""
        return NoiseEstimate.from_state(self.state)

    @property
    def confusion(self) -> ConfusionEstimate | None:
        """The labels moved from one class to one other, estimated in the middle of training (None until then)."""
        return ConfusionEstimate.from_state(self.state)

    def confusion_window(self) -> range:
        """The epochs the confusion estimate reads: with --rho-max auto only, only where every sample's
        probabilities fit in memory (confusion.MAX_CELLS), and only if they come after the noise estimate."""
        config = self.config
        if config.rho_max != "auto" or not fits_in_memory(len(self.labels), self.num_classes):
            return range(0)
        read_after = self.noise.epoch if self.noise is not None else last_read_epoch(config.warmup)
        return confusion_epochs(config.epochs, read_after)

    def wants_probabilities(self, epoch: int) -> bool:
        return self.confusion is None and epoch in self.confusion_window()

    @property
    def rho_max(self) -> float:
        """The drop share of the loss ranking: the user's number, or with --rho-max auto the decoy estimate of the
        noise rate (0 until the warm-up has estimated it, like the share of the warm-up itself). Confused samples
        (`confusion`) are left out on top of it."""
        if self.config.rho_max != "auto":
            return float(self.config.rho_max)
        return 0.0 if self.noise is None else self.noise.overall

    def ramp_share(self, epoch: int) -> float:
        """How far along the ramp epoch `epoch` is: 0 in the warm-up, 1 on the plateau."""
        config = self.config
        return rho_at(epoch, rho_max=1.0, warmup=config.warmup, ramp=config.ramp)

    def rho(self, epoch: int) -> float:
        return self.ramp_share(epoch) * self.rho_max

    @property
    def score(self) -> np.ndarray:
        """The current ranking score (higher = more suspect), updated after every epoch by `_run_epochs`."""
        return self.state["score"]

    def select(self, scores: np.ndarray, share: float) -> np.ndarray:
        """Keep mask leaving out the highest `scores`: `share` (a ramp share, 1 = the plateau) of rho_max overall,
        or per class of that class's own rho_max (its estimated noise rate with auto, else the same for all); and
        leaving out the confused samples once they are known."""
        if self.config.select == "global":
            kept = select_kept(scores, self.sample_ids, share * self.rho_max, self.eligible)
        else:
            if self.config.rho_max == "auto" and self.noise is not None:
                per_class = {int(label): share * float(rate) for label, rate in enumerate(self.noise.per_class)}
            else:
                per_class = {}
            kept = select_kept(scores, self.sample_ids, share * self.rho_max, self.eligible, self.labels, per_class)
        confused = self.state.get("confused")
        return kept if confused is None else kept & ~confused

    def after_epoch(self, epoch: int, measured: Probe) -> None:
        """Fold one epoch's measurements into the score, the suggestions, after the last evidence epoch (in the
        warm-up) the noise-rate estimate and, in the middle of training, the confusion estimate."""
        config = self.config
        self.state["score"] = updated_score(self.state["score"], measured, rank_by=config.rank_by,
                                            smoothing=config.smoothing)
        tracker = SuggestionTracker.from_state(self.state)
        tracker.update(measured)
        self.state.update(tracker.to_state())
        if self.noise is None:  # the noise estimate's inputs: the evidence epochs of the warm-up, and later
            self._read_noise(epoch, measured)
        if self.wants_probabilities(epoch):
            self._add_to_confusion_window(epoch, measured)

    def _read_noise(self, epoch: int, measured: Probe) -> None:
        """Keep this epoch's label depths; from the last evidence epoch on, read the estimate, unless it is still
        falling and may wait (noise.read_estimate); judge it (noise.doubt_estimate) and tell the user if doubted."""
        config = self.config
        evidence = evidence_epochs(config.warmup)
        if epoch < max(1, evidence[0] - 1):
            return
        # one epoch more than the window (never the first epoch): the window one epoch earlier tells whether the
        # estimate still falls
        for key, loss in (("given_depths", measured.losses), ("decoy_depths", measured.decoy_loss)):
            depth = label_depth(loss, measured.mean_class_loss)[None]
            kept = self.state.get(key, depth[:0])[-EVIDENCE_EPOCHS:]
            self.state[key] = np.concatenate([kept, depth])
        if epoch < evidence[-1]:
            return
        decoys = decoy_labels(self.labels, self.num_classes, config.seed)
        estimate, fall = read_estimate(self.state["given_depths"], self.state["decoy_depths"], self.labels, decoys,
                                       self.eligible, self.num_classes, epoch=epoch,
                                       last_chance=epoch >= last_read_epoch(config.warmup))
        if estimate is None:
            if config.rho_max == "auto":
                self.progress.note(f"the noise estimate is still falling ({fall:.0%} over epoch {epoch + 1}): "
                                   "the network is still learning the right labels; reading it again after the "
                                   "next epoch")
            return
        del self.state["given_depths"], self.state["decoy_depths"]
        measured_now = self.eligible & (measured.predicted >= 0)
        agreement = float((measured.predicted == self.labels)[measured_now].mean() if measured_now.any() else 0.0)
        estimate = doubt_estimate(estimate, fall=fall, agreement=agreement,
                                  class_sizes=np.bincount(self.labels[self.eligible], minlength=self.num_classes),
                                  num_classes=self.num_classes)
        self.state.update(estimate.to_state())
        if estimate.doubt is not None and config.rho_max == "auto":
            self.progress.note(f"the noise estimate ({estimate.uncapped:.1%}) cannot be trusted: {estimate.doubt}; "
                               f"dropping at most {estimate.overall:.1%}")

    def _add_to_confusion_window(self, epoch: int, measured: Probe) -> None:
        window = self.confusion_window()
        # NaN (not measured) stays NaN; the floor keeps a probability that underflowed to 0 finite.
        log_probs = np.log(np.maximum(measured.probabilities, np.float32(1e-30)))
        total = log_probs if epoch == window[0] else self.state["confusion_log_probs"] + log_probs
        if epoch < window[-1]:
            self.state["confusion_log_probs"] = total
            return
        self.state.pop("confusion_log_probs", None)
        mean = total / len(window)
        estimate = estimate_confusion(mean, self.labels, self.eligible, self.noise.per_class, epoch=epoch)
        self.state.update(estimate.to_state())
        self.state["confused"] = confused_samples(mean, self.labels, self.eligible, self.sample_ids, estimate,
                                                  self.noise.per_class)

    def start_phase(self) -> None:
        """A fresh model ranks from its own measurements only; the noise estimate, once made, is kept."""
        self.state["score"] = None
        self.state.update(SuggestionTracker.empty(len(self.labels)).to_state())


def _mean_loss(losses: np.ndarray, members: np.ndarray) -> float | None:
    measured = losses[members]
    measured = measured[~np.isnan(measured)]
    return float(measured.mean()) if len(measured) else None


@dataclass
class _History:
    losses: list[np.ndarray] = field(default_factory=list)
    kept: list[np.ndarray] = field(default_factory=list)
    summaries: list[EpochSummary] = field(default_factory=list)


def _run_epochs(task: Task, setup: Setup, history: _History, epochs: range, *,
                kept_for: Callable[[int, Probe | None], np.ndarray], rho_for: Callable[[int], float] | None = None,
                truncate: bool = False, phase: str = "main") -> Probe:
    """Train and measure for `epochs`; `kept_for(epoch, last measurement)` picks each epoch's samples. Returns the
    last measurement."""
    eligible_index = np.flatnonzero(task.eligible)
    readable = len(eligible_index)
    last: Probe | None = None
    first = epochs.start
    if task.resume is not None and task.resume["phase"] == phase:
        first, last = checkpoint.restore(task.resume, setup, history, EpochSummary)
        task.resume = None
    else:
        task.start_phase()
    config = task.config
    for epoch in range(first, epochs.stop):
        kept = kept_for(epoch, last)
        target_rho = rho_for(epoch) if rho_for is not None else None
        with_probabilities = task.wants_probabilities(epoch)
        training = train_epoch(
            setup, kept, epoch, schedule_epochs=config.epochs,
            truncate_rho=target_rho if truncate and target_rho else 0.0,
            record=task.eligible if config.loss_pass == "train" else None, keep_probabilities=with_probabilities,
            progress=task.progress)
        last, probe_seconds = training.measured, 0.0
        if last is None:  # the paper's separate probe pass
            started = time.perf_counter()
            last = probe(setup, task.pixels, task.labels, eligible_index, keep_probabilities=with_probabilities)
            probe_seconds = time.perf_counter() - started
        task.after_epoch(epoch, last)
        trained = int(kept.sum())
        left_out = readable - trained + training.truncated
        summary = EpochSummary(
            epoch=epoch, rho=target_rho if target_rho is not None else left_out / max(1, readable),
            trained=trained, dropped=left_out, train_loss=training.mean_loss,
            probe_loss=float(np.nanmean(last.losses)) if readable else float("nan"),
            heldout_accuracy=heldout_accuracy(setup, task.heldout), train_seconds=training.seconds,
            probe_seconds=probe_seconds, train_images_per_second=trained / max(training.seconds, 1e-9),
            probe_images_per_second=readable / probe_seconds if probe_seconds else 0.0, phase=phase,
            kept_loss=_mean_loss(last.losses, task.eligible & kept),
            left_out_loss=_mean_loss(last.losses, task.eligible & ~kept))
        history.losses.append(last.losses)
        history.kept.append(kept)
        history.summaries.append(summary)
        task.progress.epoch_done(summary, task.config.epochs)
        if task.on_checkpoint is not None:
            task.on_checkpoint(checkpoint.pack(phase=phase, epoch=epoch, setup=setup, history=history, last=last,
                                               state=task.state, fingerprint=task.fingerprint))
    assert last is not None
    return last


def _outcome(task: Task, setup: Setup, history: _History, last: Probe, final_kept: np.ndarray,
             score: np.ndarray) -> TrainingOutcome:
    suggested, confidence = SuggestionTracker.from_state(task.state).suggestions(
        min_confidence=task.config.suggest_confidence)
    return TrainingOutcome(
        model=setup.model, loss_history=np.stack(history.losses), kept_history=np.stack(history.kept),
        final_kept=final_kept, predicted=last.predicted, p_label=last.p_label, final_loss=last.losses,
        score=score, normalization=setup.normalization, suggested=suggested, suggestion_confidence=confidence,
        noise=task.noise, confusion=task.confusion,
        confused=task.state.get("confused", np.zeros_like(final_kept)) & ~final_kept, rho_max=task.rho_max,
        epochs=history.summaries)


def _stepe(task: Task) -> TrainingOutcome:
    setup, history = task.fresh_setup(), _History()

    def kept_for(epoch: int, last: Probe | None) -> np.ndarray:
        if last is None:  # nothing measured yet: the first epoch trains on everything
            return task.eligible.copy()
        return task.select(task.score, task.ramp_share(epoch))

    last = _run_epochs(task, setup, history, range(task.config.epochs), kept_for=kept_for, rho_for=task.rho)
    final = task.select(task.score, task.ramp_share(task.config.epochs - 1))
    return _outcome(task, setup, history, last, final, task.score)


def _erm(task: Task) -> TrainingOutcome:
    setup, history = task.fresh_setup(), _History()
    last = _run_epochs(task, setup, history, range(task.config.epochs), kept_for=lambda *_: task.eligible.copy(),
                       rho_for=lambda _: 0.0)
    return _outcome(task, setup, history, last, task.eligible.copy(), task.score)


def _truncation(task: Task) -> TrainingOutcome:
    setup, history = task.fresh_setup(), _History()
    last = _run_epochs(task, setup, history, range(task.config.epochs), kept_for=lambda *_: task.eligible.copy(),
                       rho_for=task.rho, truncate=True)
    final = task.select(task.score, task.ramp_share(task.config.epochs - 1))
    return _outcome(task, setup, history, last, final, task.score)


def _spl(task: Task) -> TrainingOutcome:
    setup, history = task.fresh_setup(), _History()
    threshold: list[float] = task.state.setdefault("spl_threshold", [])  # lambda_t of the epochs after the warm-up

    def kept_for(epoch: int, last: Probe | None) -> np.ndarray:
        if last is None or epoch < task.config.warmup:
            return task.eligible.copy()
        if not threshold:
            threshold.append(float(np.quantile(last.losses[task.eligible], 1.0 - task.rho_max)))
        else:
            threshold.append(threshold[-1] * SPL_GROWTH)
        return task.eligible & (last.losses < threshold[-1])

    last = _run_epochs(task, setup, history, range(task.config.epochs), kept_for=kept_for)
    final = task.eligible & (last.losses < threshold[-1]) if threshold else task.eligible.copy()
    return _outcome(task, setup, history, last, final, last.losses)


def _oneshot(task: Task) -> TrainingOutcome:
    history = _History()
    if task.resume_phase() != "main":
        ranking_setup = task.fresh_setup()
        ranking_epochs = max(1, task.config.warmup)  # ranking with an untrained network would be noise
        ranked = _run_epochs(task, ranking_setup, history, range(ranking_epochs),
                             kept_for=lambda *_: task.eligible.copy(), rho_for=lambda _: 0.0, phase="warmup-ranking")
        del ranking_setup
        task.state["ranking_losses"] = ranked.losses
        task.state["kept_once"] = task.select(ranked.losses, 1.0)
    kept_once, ranking_losses = task.state["kept_once"], task.state["ranking_losses"]
    setup = task.fresh_setup()
    last = _run_epochs(task, setup, history, range(task.config.epochs), kept_for=lambda *_: kept_once.copy(),
                       rho_for=lambda _: task.rho_max)
    return _outcome(task, setup, history, last, kept_once, ranking_losses)


METHODS: dict[str, Callable[[Task], TrainingOutcome]] = {
    "stepe": _stepe, "erm": _erm, "truncation": _truncation, "spl": _spl, "oneshot": _oneshot,
}
assert tuple(METHODS) == METHOD_NAMES


def train_with_method(task: Task) -> TrainingOutcome:
    return METHODS[task.config.method](task)

