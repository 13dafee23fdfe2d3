"""What every method gets (`Task`: the decoded data, the readable-and-labelled mask, the resolved config) and what a
run learns about its samples epoch by epoch (`SampleState`: the ranking score, the suggestions, the noise and
confusion estimates), with the rules that read them: the drop share rho_t and the keep mask.

`Task.updated` folds one epoch's measurements into a `SampleState` and returns the new state; nothing here
trains. A `SampleState` goes into every checkpoint (`to_state`) and comes back from it (`from_state`) as a dict of
arrays and plain values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import labelscrub.checkpoint as checkpoint
from labelscrub.config import CleanConfig
from labelscrub.confusion import (
    ConfusionEstimate,
    ConfusionReading,
    TopLogProbs,
    confused_samples,
    confusion_beyond,
    confusion_epochs,
    count_epochs,
    epochs_to_count,
    fits_in_memory,
    read_confusion,
    stronger_reading,
    top_count,
)
from labelscrub.distributed import Processes
from labelscrub.measurement import Probe, TopClasses
from labelscrub.mistakes import MistakeEstimate, combined_rates, count_is_used, count_mistakes
from labelscrub.noise import (
    EVIDENCE_EPOCHS,
    NoiseEstimate,
    doubt_estimate,
    evidence_epochs,
    label_depth,
    last_read_epoch,
    overall_rate,
    read_estimate,
)
from labelscrub.progress import Progress
from labelscrub.ranking import updated_score
from labelscrub.schedule import rho_at, select_kept
from labelscrub.suggest import SuggestionTracker
from labelscrub.train import Setup, decoy_labels, make_setup

# The methods whose --rho-max auto drops nothing until the plausible mistakes are counted (Task.waits_for_the_count).
WAIT_FOR_THE_COUNT = ("stepe", "truncation")

# The optional arrays of a SampleState, stored in a checkpoint only when present.
_OPTIONAL_ARRAYS = ("given_depths", "decoy_depths", "confusion_log_probs", "confused", "ranking_losses", "kept_once")


@dataclass(frozen=True)
class SampleState:
    """What a run has learned about its samples so far; with the model, everything a resumed run needs. Arrays are
    (N,) over the training samples unless said otherwise."""

    suggestions: SuggestionTracker
    score: np.ndarray | None = None  # float32 ranking score, higher = more suspect; None before a phase's first epoch
    # (epochs, N) float32 label depths of the given and the decoy labels over the last evidence epochs, kept until
    # the noise estimate is read
    given_depths: np.ndarray | None = None
    decoy_depths: np.ndarray | None = None
    noise: NoiseEstimate | None = None  # made from the warm-up epochs
    # (N, classes) float32 sum of the log-probabilities over the window read so far: the confusion estimate's, then
    # the plausible-mistake count's (the same window in a short run)
    confusion_log_probs: np.ndarray | None = None
    confusion_top: TopLogProbs | None = None  # the same beyond confusion.MAX_CELLS: a few classes per sample
    confusion_reading: ConfusionReading | None = None  # what the confusion window showed, until the count's
    mistakes: MistakeEstimate | None = None  # plausible mistakes, read in the middle of training
    confusion: ConfusionEstimate | None = None  # made with the count, with --rho-max auto only
    confused: np.ndarray | None = None  # bool: left out as confused, once the confusion estimate is made
    spl_threshold: tuple[float, ...] = ()  # spl: lambda_t of each epoch after the warm-up
    ranking_losses: np.ndarray | None = None  # oneshot: the ranking model's losses, its score
    kept_once: np.ndarray | None = None  # oneshot: the samples its fresh model trains on

    @classmethod
    def empty(cls, count: int) -> SampleState:
        return cls(SuggestionTracker.empty(count))

    def restarted(self) -> SampleState:
        """For a fresh model, which ranks from its own measurements only; the estimates, once made, are kept."""
        fresh = SuggestionTracker.empty(len(self.suggestions.predicted))
        return dataclasses.replace(self, score=None, suggestions=fresh)

    def to_state(self) -> dict:
        state = {"score": self.score, **self.suggestions.to_state(), "spl_threshold": list(self.spl_threshold)}
        state.update({name: getattr(self, name) for name in _OPTIONAL_ARRAYS if getattr(self, name) is not None})
        for estimate in (self.noise, self.mistakes, self.confusion, self.confusion_top, self.confusion_reading):
            if estimate is not None:
                state.update(estimate.to_state())
        return state

    @classmethod
    def from_state(cls, state: dict) -> SampleState:
        return cls(suggestions=SuggestionTracker.from_state(state), score=state.get("score"),
                   noise=NoiseEstimate.from_state(state), mistakes=MistakeEstimate.from_state(state),
                   confusion=ConfusionEstimate.from_state(state),
                   confusion_top=TopLogProbs.from_state(state),
                   confusion_reading=ConfusionReading.from_state(state),
                   spl_threshold=tuple(state.get("spl_threshold", ())),
                   **{name: state.get(name) for name in _OPTIONAL_ARRAYS})


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
    # from, restored by the phase it was written in.
    on_checkpoint: Callable[[dict], None] | None = None
    resume: dict | None = None
    fingerprint: dict = field(default_factory=dict)
    processes: Processes | None = None  # under torchrun: this process's rank and the collectives; None = one process

    def resume_phase(self) -> str | None:
        return None if self.resume is None else self.resume["phase"]

    def initial_samples(self) -> SampleState:
        """The per-sample state the first phase starts from: the checkpoint's when resuming."""
        if self.resume is None:
            return SampleState.empty(len(self.labels))
        return SampleState.from_state(checkpoint.method_state(self.resume))

    def fresh_setup(self) -> Setup:
        return make_setup(self.pixels, self.labels, self.eligible, self.num_classes, self.config, self.device,
                          processes=self.processes)

    def confusion_window(self, samples: SampleState) -> range:
        """The epochs the confusion estimate reads: with --rho-max auto only, and only if they come after the noise
        estimate."""
        return self._mid_training_window(samples, confusion_epochs)

    def count_window(self, samples: SampleState) -> range:
        """The epochs the plausible-mistake count reads, under the same conditions; from its last on, auto drops."""
        return self._mid_training_window(samples, count_epochs)

    def _mid_training_window(self, samples: SampleState, epochs_of: Callable[[int, int], range]) -> range:
        config = self.config
        if config.rho_max != "auto":
            return range(0)
        read_after = samples.noise.epoch if samples.noise is not None else last_read_epoch(config.warmup)
        return epochs_of(config.epochs, read_after)

    def _summed_window(self, samples: SampleState, epoch: int) -> range:
        """The window whose log-probabilities are summed at epoch `epoch`: the confusion estimate's until it is read,
        then the count's. A run resumed inside or past the first window without its sum or reading (from a
        checkpoint of a version that read once) reads once, in the count's."""
        early = self.confusion_window(samples)
        summing = samples.confusion_log_probs is not None or samples.confusion_top is not None
        if samples.confusion_reading is None and len(early) and (epoch <= early[0] or
                                                                 (summing and epoch <= early[-1])):
            return early
        return self.count_window(samples)

    def wants_probabilities(self, samples: SampleState, epoch: int) -> bool:
        """Whether epoch `epoch` measures every class's probability: in a mid-training window, where they fit."""
        return self._in_summed_window(samples, epoch) and self._keeps_every_class()

    def wants_top_classes(self, samples: SampleState, epoch: int) -> TopClasses | None:
        """What epoch `epoch` measures of a few classes per sample: in a mid-training window, where every class's
        probability would not fit; at the same classes as the window's first epoch."""
        if not self._in_summed_window(samples, epoch) or self._keeps_every_class():
            return None
        chosen = None if samples.confusion_top is None else samples.confusion_top.classes
        return TopClasses(top_count(self.num_classes), chosen)

    def _in_summed_window(self, samples: SampleState, epoch: int) -> bool:
        return samples.confusion is None and epoch in self._summed_window(samples, epoch)

    def _keeps_every_class(self) -> bool:
        return fits_in_memory(len(self.labels), self.num_classes)

    def rho_max(self, samples: SampleState) -> float:
        """The drop share of the loss ranking: the user's number, or with --rho-max auto the estimated noise rate
        (mistakes.combined_rates, weighted by class size; 0 until the warm-up has estimated it, like the share of
        the warm-up itself). Confused samples (`SampleState.confused`) are left out on top of it."""
        if self.config.rho_max != "auto":
            return float(self.config.rho_max)
        if samples.noise is None:
            return 0.0
        if not count_is_used(samples.noise, samples.mistakes):
            return samples.noise.overall
        sizes = np.bincount(self.labels[self.eligible], minlength=self.num_classes)
        return overall_rate(combined_rates(samples.noise, samples.mistakes), sizes)

    def ramp_share(self, epoch: int) -> float:
        """How far along the ramp epoch `epoch` is: 0 in the warm-up, 1 on the plateau."""
        config = self.config
        return rho_at(epoch, rho_max=1.0, warmup=config.warmup, ramp=config.ramp)

    def rho(self, epoch: int, samples: SampleState) -> float:
        return 0.0 if self.waits_for_the_count(samples) else self.ramp_share(epoch) * self.rho_max(samples)

    def waits_for_the_count(self, samples: SampleState) -> bool:
        """Whether --rho-max auto still drops nothing, in the methods that withhold samples while training (Step-E,
        truncation): until the plausible mistakes are counted in the confusion window. The count must see a network
        trained on every sample: a withheld label stays unfitted and looks like a mistake however right it is, and
        the wrong labels left in training are the ones that look right (mistakes.py). A run too short for the
        window drops from the warm-up on, by the decoy estimate alone."""
        return (self.config.rho_max == "auto" and self.config.method in WAIT_FOR_THE_COUNT
                and samples.mistakes is None and len(self.count_window(samples)) > 0)

    def select(self, scores: np.ndarray, share: float, samples: SampleState) -> np.ndarray:
        """Keep mask leaving out the highest `scores`: `share` (a ramp share, 1 = the plateau) of rho_max overall,
        or per class of that class's own rho_max (its estimated noise rate with auto, else the same for all); and
        leaving out the confused samples once they are known. Nothing while auto waits for the count."""
        if self.waits_for_the_count(samples):
            return self.eligible.copy()
        rho_max = self.rho_max(samples)
        if self.config.select == "global":
            kept = select_kept(scores, self.sample_ids, share * rho_max, self.eligible)
        else:
            if self.config.rho_max == "auto" and samples.noise is not None:
                rates = combined_rates(samples.noise, samples.mistakes)
                per_class = {int(label): share * float(rate) for label, rate in enumerate(rates)}
            else:
                per_class = {}
            kept = select_kept(scores, self.sample_ids, share * rho_max, self.eligible, self.labels, per_class)
        return kept if samples.confused is None else kept & ~samples.confused

    def updated(self, samples: SampleState, epoch: int, measured: Probe) -> SampleState:
        """`samples` with one epoch's measurements folded in: the score, the suggestions, after the last evidence
        epoch (in the warm-up) the noise-rate estimate and, in the middle of training, the confusion estimate."""
        config = self.config
        suggestions = dataclasses.replace(samples.suggestions)
        suggestions.update(measured)
        samples = dataclasses.replace(
            samples, suggestions=suggestions,
            score=updated_score(samples.score, measured, rank_by=config.rank_by, smoothing=config.smoothing))
        if samples.noise is None:  # the noise estimate's inputs: the evidence epochs of the warm-up, and later
            samples = self._read_noise(samples, epoch, measured)
        if self._in_summed_window(samples, epoch):
            samples = self._add_to_window(samples, epoch, measured)
        return samples

    def _read_noise(self, samples: SampleState, epoch: int, measured: Probe) -> SampleState:
        """Keep this epoch's label depths; from the last evidence epoch on, read the estimate, unless it is still
        falling and may wait (noise.read_estimate); judge it (noise.doubt_estimate) and tell the user if doubted."""
        config = self.config
        evidence = evidence_epochs(config.warmup)
        # a run too short for the evidence epochs reads what it has after its last epoch, doubted, rather than
        # leaving auto without an estimate and dropping nothing without a word
        last_epoch = epoch == config.epochs - 1
        if epoch < max(1, evidence[0] - 1) and not last_epoch:
            return samples
        # one epoch more than the window (never the first epoch): the window one epoch earlier tells whether the
        # estimate still falls
        depths = {}
        for name, loss in (("given_depths", measured.losses), ("decoy_depths", measured.decoy_loss)):
            depth = label_depth(loss, measured.mean_class_loss)[None]
            earlier = getattr(samples, name)
            depths[name] = np.concatenate([depth[:0] if earlier is None else earlier[-EVIDENCE_EPOCHS:], depth])
        samples = dataclasses.replace(samples, **depths)
        if epoch < evidence[-1] and not last_epoch:
            return samples
        decoys = decoy_labels(self.labels, self.num_classes, config.seed)
        estimate, fall = read_estimate(samples.given_depths, samples.decoy_depths, self.labels, decoys,
                                       self.eligible, self.num_classes, epoch=epoch,
                                       last_chance=last_epoch or epoch >= last_read_epoch(config.warmup))
        if estimate is None:
            if config.rho_max == "auto":
                self.progress.note(f"the noise estimate is still falling ({fall:.0%} over epoch {epoch + 1}): "
                                   "the network is still learning the right labels; reading it again after the "
                                   "next epoch")
            return samples
        measured_now = self.eligible & (measured.predicted >= 0)
        agreement = float((measured.predicted == self.labels)[measured_now].mean() if measured_now.any() else 0.0)
        estimate = doubt_estimate(estimate, fall=fall, agreement=agreement,
                                  class_sizes=np.bincount(self.labels[self.eligible], minlength=self.num_classes),
                                  num_classes=self.num_classes,
                                  ended_early=evidence if epoch < evidence[-1] else None,
                                  epochs_to_count=self._epochs_to_count(epoch))
        samples = dataclasses.replace(samples, noise=estimate, given_depths=None, decoy_depths=None)
        if estimate.doubt is not None and config.rho_max == "auto":
            counted_later = estimate.only_still_falling and len(self.count_window(samples))
            more = " unless the plausible mistakes counted in mid-training are more" if counted_later else ""
            self.progress.note(f"the noise estimate ({estimate.uncapped:.1%}) cannot be trusted: {estimate.doubt}; "
                               f"dropping at most {estimate.overall:.1%}{more}")
        return samples

    def _epochs_to_count(self, estimate_epoch: int) -> int | None:
        """The epochs a run needs for the plausible-mistake count after an estimate read at `estimate_epoch`, where
        auto would count and this run is too short; else None."""
        config = self.config
        if config.rho_max != "auto" or len(count_epochs(config.epochs, estimate_epoch)):
            return None
        return epochs_to_count(estimate_epoch)

    def _add_to_window(self, samples: SampleState, epoch: int, measured: Probe) -> SampleState:
        window = self._summed_window(samples, epoch)
        if not self._keeps_every_class():
            if epoch == window[0] and samples.confusion_reading is None:
                every = len(self.labels) * self.num_classes * 4 / 2**30  # float32 bytes, in GiB
                self.progress.note(
                    f"the confusion estimate reads each sample's {top_count(self.num_classes)} most likely other "
                    f"classes, not all {self.num_classes:,}: every class's probabilities would take {every:.1f} GiB")
            top = _top_log_probs(measured)
            top = top if epoch == window[0] else samples.confusion_top.plus(top)
            if epoch < window[-1]:
                return dataclasses.replace(samples, confusion_top=top)
            return self._window_read(samples, epoch, top.mean(len(window)))
        # NaN (not measured) stays NaN; the floor keeps a probability that underflowed to 0 finite.
        log_probs = np.log(np.maximum(measured.probabilities, np.float32(1e-30)))
        total = log_probs if epoch == window[0] else samples.confusion_log_probs + log_probs
        if epoch < window[-1]:
            return dataclasses.replace(samples, confusion_log_probs=total)
        return self._window_read(samples, epoch, total / len(window))

    def _window_read(self, samples: SampleState, epoch: int, mean: np.ndarray | TopLogProbs) -> SampleState:
        """At a window's last epoch: the confusion reading; at the count's (in a short run, the same window), the
        count too, and the stronger of the two readings per class. The window let go."""
        samples = dataclasses.replace(samples, confusion_log_probs=None, confusion_top=None)
        reading = read_confusion(mean, self.labels, self.eligible, self.num_classes, epoch=epoch)
        if samples.confusion_reading is None:
            samples = dataclasses.replace(samples, confusion_reading=reading)
            if epoch < self.count_window(samples)[-1]:
                return samples
        else:
            reading = stronger_reading(samples.confusion_reading, reading, self.labels)
        return self._count_read(samples, epoch, mean, reading)

    def _count_read(self, samples: SampleState, epoch: int, mean: np.ndarray | TopLogProbs,
                    reading: ConfusionReading) -> SampleState:
        """The plausible-mistake count from the window's mean log-probabilities, then which classes `reading` finds
        confused, and their samples. A confusion counts, and its samples are left out, only beyond the noise rate
        the loss ranking already leaves out (mistakes.combined_rates), the plausible mistakes included: they are
        often the same labels."""
        mistakes = count_mistakes(mean, self.labels, self.eligible, self.num_classes, samples.noise, epoch=epoch)
        rates = combined_rates(samples.noise, mistakes)
        estimate = confusion_beyond(reading, rates)
        confused = confused_samples(reading, self.labels, self.eligible, self.sample_ids, estimate, rates)
        return dataclasses.replace(samples, mistakes=mistakes, confusion=estimate, confused=confused,
                                   confusion_reading=None)


def _top_log_probs(measured: Probe) -> TopLogProbs:
    """One epoch's measurement asked for with `TopClasses`, as the confusion estimate reads it."""
    return TopLogProbs(measured.top_classes.astype(np.int32), measured.top_log_probs, -measured.losses,
                       measured.rest_log_prob)
