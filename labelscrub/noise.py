"""Estimating the share of wrong labels from the training dynamics, so rho_max need not be guessed.

Every sample carries a fixed decoy label: a class other than its own, drawn uniformly (train.decoy_labels). Each
epoch measures how wrong two labels look to the model: the sample's given label and its decoy. The decoys show
what wrong labels look like to this model at this point of training, for this data, whatever the model's
accuracy. While the network has not memorised (the warm-up), a wrong given label looks like a decoy, and a right
label looks better. So for a high threshold s

    share of given labels above s  ~=  noise rate x share of decoys above s  (+ right labels above s)

and every ratio share_given(> s) / share_decoy(> s) is an estimate that errs mainly upward, by the right labels
above s (downward only as far as wrong labels were already fitted, or by chance in small classes).
`estimate_noise` takes, for each given class c, the smallest ratio over thresholds at the 50th to 95th percentile
of the decoys of class c (the samples whose decoy is c: how c scores on images that are not c), which is
mixture-proportion estimation as in Scott (2015); the overall rate weights the classes by size.

How wrong a label looks (`label_depth`) is not its loss but its loss minus the mean loss over all classes: how
far below the average class the model puts it. On an image the model confidently calls something else, every
other class gets a high loss, the right one too; relative to the average class the right one usually still
stands out. And each label counts at its best over the last EVIDENCE_EPOCHS warm-up epochs: a right label the
model still gets wrong usually had a better epoch, a wrong label and a decoy rarely do. Both cut the right labels
above s. The estimate is made once, before any sample has been dropped: after the warm-up's last epoch, but not
before the 4th (MIN_EPOCHS_BEFORE_ESTIMATE) nor after the 6th (EVIDENCE_BEFORE_EPOCH), before the wrong labels
are fitted; while it still falls fast it waits (`read_estimate`), and one that cannot be trusted is capped
(`doubt_estimate`). It matches the truth when wrong labels are spread over the other classes; where labels are
wrong in a systematic way (cat images labelled dog, over and over) the model learns the confusion and the
estimate is too low: confusion.py finds those labels later in training. Where wrong labels are the model's own
mistakes (instance-dependent noise from a weak reference network) it finds none. docs/METHOD.md, "Estimating the
noise rate", has the formulas and the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Thresholds: these percentiles of the decoy losses. Below the median, right labels dominate the tail; above the
# 95th, too few decoys remain for a stable share.
THRESHOLD_PERCENTILES = np.arange(50, 96, 5)
# A class with fewer decoys than this is compared with the decoys of all classes.
MIN_DECOYS = 20
# The estimate reads each label at its best over this many last warm-up epochs (fewer if the warm-up is shorter).
EVIDENCE_EPOCHS = 3
# ...and never an epoch from this one (0-based) on, however long the warm-up: by then the network has seen each
# wrong label often enough to begin fitting it, and the estimate reads low.
EVIDENCE_BEFORE_EPOCH = 6
# ...and never before this many epochs have trained, however short the warm-up: in the first epochs the network
# has barely left its random start and right labels look as wrong as decoys, so the estimate reads far too high.
# A shorter warm-up makes auto wait: nothing is dropped until the estimate is made.
MIN_EPOCHS_BEFORE_ESTIMATE = 4
# The estimate comes down while the network is still learning the right labels it got wrong, and a right label
# that still looks wrong pushes it up. So it is read only once it has settled: while it fell by more than MAX_FALL
# (relative) from the window one epoch earlier (not reaching back to the first epoch), the reading waits another
# epoch, up to a window ending with the EVIDENCE_BEFORE_EPOCH-th epoch.
MAX_FALL = 0.25
# An estimate that cannot be trusted (`doubt_estimate`) is capped at DOUBTED_CAP: dropping a tenth of the data
# costs little if the labels are clean, where trusting a wrong estimate can drop half of it. Doubted when it was
# still falling at the last epoch it may wait for, when the network agrees with the labels less than MIN_LIFT
# times as often as chance, or when the median class has fewer than MIN_DECOYS samples (too few for tail shares).
MIN_LIFT = 1.5
DOUBTED_CAP = 0.1
# Never estimate more than this share: a drop share near 1 would leave nothing to train on.
MAX_NOISE_RATE = 0.9


@dataclass(frozen=True)
class NoiseEstimate:
    overall: float  # estimated share of wrong labels among the readable samples
    per_class: np.ndarray  # (classes,) float64 estimated share within each given class; NaN for empty classes
    epoch: int  # the epoch (0-based) after which the estimate was made
    # Why the estimate cannot be trusted (`doubt_estimate`), None when it can. A doubted estimate is capped at
    # DOUBTED_CAP overall and per class; `uncapped` keeps what the rule read.
    doubt: str | None = None
    uncapped: float | None = None
    # Doubted only because it was still falling: the network was still learning in the warm-up, not untrustworthy
    # (mistakes.count_is_used).
    only_still_falling: bool = False

    def to_state(self) -> dict:
        state = {"noise_overall": self.overall, "noise_per_class": self.per_class, "noise_epoch": self.epoch}
        if self.doubt is not None:
            state.update(noise_doubt=self.doubt, noise_uncapped=self.uncapped,
                         noise_only_still_falling=self.only_still_falling)
        return state

    @classmethod
    def from_state(cls, state: dict) -> NoiseEstimate | None:
        if "noise_overall" not in state:
            return None
        uncapped = state.get("noise_uncapped")
        return cls(float(state["noise_overall"]), np.asarray(state["noise_per_class"], np.float64),
                   int(state["noise_epoch"]), state.get("noise_doubt"),
                   None if uncapped is None else float(uncapped), bool(state.get("noise_only_still_falling", False)))


def evidence_epochs(warmup: int) -> range:
    """The epochs (0-based) whose measurements the estimate reads, the estimate being made after the last of them:
    the last EVIDENCE_EPOCHS of the warm-up or, in a warm-up longer than EVIDENCE_BEFORE_EPOCH, of its first
    EVIDENCE_BEFORE_EPOCH epochs; in a warm-up shorter than MIN_EPOCHS_BEFORE_ESTIMATE, of that many epochs.
    Never the first epoch: its network has barely left its random start."""
    last = min(max(warmup, MIN_EPOCHS_BEFORE_ESTIMATE), EVIDENCE_BEFORE_EPOCH) - 1
    first = max(last + 1 - EVIDENCE_EPOCHS, 1)
    return range(first, last + 1)


def label_depth(losses: np.ndarray, mean_class_losses: np.ndarray) -> np.ndarray:
    """How far below the average class the model puts a label: its loss minus the sample's mean loss over all
    classes (the negative of the label's centred logit). Higher = the label looks more wrong."""
    return (losses - mean_class_losses).astype(np.float32)


def best_depth(previous: np.ndarray | None, depth: np.ndarray) -> np.ndarray:
    """The best (lowest) depth so far, elementwise; NaN (not measured this epoch) on either side takes the other."""
    return depth if previous is None else np.fmin(previous, depth)


def estimate_noise(given: np.ndarray, decoy: np.ndarray, labels: np.ndarray, decoys: np.ndarray,
                   eligible: np.ndarray, num_classes: int, *, epoch: int) -> NoiseEstimate:
    """Share of wrong labels, per given class and overall (the class shares weighted by class size), from how
    wrong each sample's given label and its decoy label look (`given`, `decoy`: higher = more wrong; the best
    label depths of the last warm-up epochs). Samples that are not eligible, or not measured (NaN), take no part.

    What a wrong label c looks like is how c looks on images of other classes, i.e. the decoys of the samples
    whose decoy is c; comparing each class with its own decoys accounts for a model that favours some classes
    over others."""
    usable = np.asarray(eligible, bool) & ~np.isnan(given) & ~np.isnan(decoy)
    per_class = np.full(num_classes, np.nan)
    if not usable.any():
        return NoiseEstimate(0.0, per_class, epoch)
    given, decoy = given[usable], decoy[usable]
    given_labels, decoy_labels = labels[usable], decoys[usable]
    sizes = np.bincount(given_labels, minlength=num_classes)
    for label in np.flatnonzero(sizes):
        wrong = decoy[decoy_labels == label]
        if len(wrong) < MIN_DECOYS:  # too few to describe this class's wrong labels: use every class's decoys
            wrong = decoy
        per_class[label] = smallest_tail_ratio(given[given_labels == label], wrong)
    return NoiseEstimate(overall_rate(per_class, sizes), per_class, epoch)


def overall_rate(per_class: np.ndarray, sizes: np.ndarray) -> float:
    """The share of wrong labels overall: the classes' shares weighted by their sizes (NaN shares count 0)."""
    return float(np.nansum(per_class * sizes) / max(1, sizes.sum()))


def last_read_epoch(warmup: int) -> int:
    """The latest epoch (0-based) after which the estimate may be read, when it waits to settle (MAX_FALL)."""
    return max(evidence_epochs(warmup)[-1], EVIDENCE_BEFORE_EPOCH - 1)


def read_estimate(given_depths: np.ndarray, decoy_depths: np.ndarray, labels: np.ndarray, decoys: np.ndarray,
                  eligible: np.ndarray, num_classes: int, *, epoch: int,
                  last_chance: bool) -> tuple[NoiseEstimate | None, float]:
    """The estimate over the last EVIDENCE_EPOCHS rows of `given_depths` / `decoy_depths` (one row per epoch, the
    newest last), each label at its best depth; None while it is still falling by more than MAX_FALL from the
    window one epoch earlier (the row before), unless `last_chance`. Also returns that fall (0 without an earlier
    window)."""
    def over(rows: slice) -> NoiseEstimate:
        return estimate_noise(np.fmin.reduce(given_depths[rows]), np.fmin.reduce(decoy_depths[rows]), labels,
                              decoys, eligible, num_classes, epoch=epoch)

    now = over(slice(-EVIDENCE_EPOCHS, None))
    fall = 0.0
    if len(given_depths) > 1:
        before = over(slice(-EVIDENCE_EPOCHS - 1, -1))
        fall = (before.overall - now.overall) / before.overall if before.overall > 0 else 0.0
    if fall > MAX_FALL and not last_chance:
        return None, fall
    return now, fall


def doubt_estimate(estimate: NoiseEstimate, *, fall: float, agreement: float, class_sizes: np.ndarray,
                   num_classes: int, ended_early: range | None = None,
                   epochs_to_count: int | None = None) -> NoiseEstimate:
    """The estimate as it may be used: unchanged when it can be trusted, else capped at DOUBTED_CAP with the
    reason. `fall` is how much it fell over its last epoch (relative); `agreement` the share of the samples whose
    given label the network predicted in its last epoch; `class_sizes` the eligible samples per given class;
    `ended_early`, the evidence epochs (0-based) when the run ended before the last of them; `epochs_to_count`,
    the epochs a run would need for the plausible-mistake count (mistakes.py) when this one is too short for it."""
    reasons = []
    still_falling = fall > MAX_FALL
    if ended_early is not None:
        reasons.append(f"the run ended after epoch {estimate.epoch + 1}, before the epochs the estimate reads "
                       f"({ended_early[0] + 1}-{ended_early[-1] + 1}); train longer (--epochs) or set --rho-max")
    elif epochs_to_count is not None:
        # the decoys see labels wrong at random only; people's mistakes, which they miss, are counted in
        # mid-training, and a run without a middle after the estimate would drop as if there were none
        reasons.append(f"the run is too short to count mistakes that look plausible (that needs at least "
                       f"{epochs_to_count} epochs), so only labels wrong at random are counted; train longer "
                       "(--epochs) or set --rho-max")
    if still_falling:
        reasons.append(f"it was still falling ({fall:.0%} over the last epoch): the network is still learning "
                       "the right labels; train longer (--epochs) or set --rho-max")
    if agreement < MIN_LIFT / max(1, num_classes):
        reasons.append(f"the network is near chance (it agrees with {agreement:.0%} of the labels)")
    present = class_sizes[class_sizes > 0]
    if len(present) and np.median(present) < MIN_DECOYS:
        reasons.append(f"the median class has {int(np.median(present))} samples, under {MIN_DECOYS}")
    if not reasons:
        return estimate
    return NoiseEstimate(min(estimate.overall, DOUBTED_CAP), np.minimum(estimate.per_class, DOUBTED_CAP),
                         estimate.epoch, "; ".join(reasons), estimate.overall,
                         only_still_falling=still_falling and len(reasons) == 1)


def smallest_tail_ratio(given: np.ndarray, wrong: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The smallest ratio, over thresholds at THRESHOLD_PERCENTILES of `wrong`, of the share of `given` above the
    threshold to the share of `wrong` above it; clipped to [0, MAX_NOISE_RATE]. With `weights`, each value of
    `wrong` counts in proportion to its weight, in the percentiles and the shares alike."""
    thresholds = tail_thresholds(wrong, weights)
    return _clipped(min(tail_ratio(given, wrong, threshold, weights) for threshold in thresholds))


def tail_thresholds(wrong: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The values of `wrong` at THRESHOLD_PERCENTILES, each value counting in proportion to its weight."""
    if weights is None:
        return np.percentile(wrong, THRESHOLD_PERCENTILES)
    order = np.argsort(wrong, kind="stable")
    cumulative = np.cumsum(weights[order], dtype=np.float64)
    return np.interp(THRESHOLD_PERCENTILES / 100 * cumulative[-1], cumulative, wrong[order])


def tail_ratio(given: np.ndarray, wrong: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> float:
    """Share of `given` above `threshold` over the (weighted) share of `wrong` above it."""
    above = wrong > threshold
    wrong_share = float(above.mean() if weights is None else weights[above].sum() / weights.sum())
    return float((given > threshold).mean()) / wrong_share if wrong_share else float("inf")


def _clipped(rate: float) -> float:
    return float(min(max(rate, 0.0), MAX_NOISE_RATE))

