"""Labels moved from one class to one other class, over and over (truck images labelled automobile): finding them.

The decoy estimate (noise.py) sees wrong labels spread over the other classes. A wrong label that repeats one
confusion is a pattern the network learns: on a truck it looks like a likely class, not like a decoy, and early in
training the network mixes the two classes up anyway. Such labels show later. By the middle of training the
network has fitted the right labels of the images it found hard at first, so on clean data the images labelled c
no longer score like the images labelled k. Labels moved from k to c are fitted much later, because most images
of k that look like them carry the label k: they keep scoring like the images labelled k.

So for each given class c and a candidate source class k, with the score log p(k) - log p(c) averaged over
CONFUSION_EPOCHS epochs around CONFUSION_AT of the training, the share of the images labelled c that score like
those labelled k is estimated as in noise.py (the smallest ratio of tail shares, Scott 2015), the images labelled
k standing for images of k. The largest share over the candidates is the class's confused share if it exceeds
the class's decoy estimate (floored at the mean of the classes' estimates, `spread_floor`) by MIN_CONFUSED_SHARE
or more, and sums with the reverse share (k scoring like c) to under 1. Its confused samples, left out of training
from then on, are the images labelled c scoring most like k, as many as the share exceeds that floor (the loss
ranking leaves out about the decoy share already). On clean data the shares are 0 by then. docs/METHOD.md, "Labels
confused with one other class", has the formulas and the measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labelscrub.noise import MIN_DECOYS, smallest_tail_ratio
from labelscrub.schedule import select_kept

# The estimate reads the epochs ending at this share of the training. Earlier, clean data still shows natural
# confusions the network has not resolved yet; later, the moved labels are being fitted and look right.
CONFUSION_AT = 0.55
# ...averaged over this many epochs' log-probabilities: one epoch's augmentations make the score jumpy.
CONFUSION_EPOCHS = 3
# Source classes tried per class: those the network gives most probability on the images labelled with it.
CANDIDATES = 3
# A class counts as confused only when its share exceeds the decoy floor by this much: below it a leftover
# natural confusion is as likely.
MIN_CONFUSED_SHARE = 0.05
# Above this many (samples x classes) probabilities the per-sample log-probabilities are not kept and the
# estimate is skipped: 2**27 float32 values are 512 MiB (CIFAR-100's 50,000 x 100 are 5 million).
MAX_CELLS = 2**27


@dataclass(frozen=True)
class ConfusionEstimate:
    share: np.ndarray  # (classes,) float64 share of each given class moved there from `source`; 0 = none found
    source: np.ndarray  # (classes,) int64 the class its confused labels came from; -1 = none
    epoch: int  # the epoch (0-based) after which it was made

    def to_state(self) -> dict:
        return {"confusion_share": self.share, "confusion_source": self.source, "confusion_epoch": self.epoch}

    @classmethod
    def from_state(cls, state: dict) -> ConfusionEstimate | None:
        if "confusion_share" not in state:
            return None
        return cls(np.asarray(state["confusion_share"], np.float64), np.asarray(state["confusion_source"], np.int64),
                   int(state["confusion_epoch"]))


def confusion_epochs(epochs: int, after: int) -> range:
    """The epochs (0-based) whose log-probabilities the estimate averages, the estimate being made after the last
    of them; empty when that window would not start after epoch `after` (the decoy estimate's last epoch): a run
    that short has no middle to read."""
    last = math.ceil(CONFUSION_AT * epochs) - 1
    first = last - CONFUSION_EPOCHS + 1
    return range(first, last + 1) if first > after else range(0)


def fits_in_memory(samples: int, classes: int) -> bool:
    return samples * classes <= MAX_CELLS


def estimate_confusion(log_probs: np.ndarray, labels: np.ndarray, usable: np.ndarray, spread: np.ndarray, *,
                       epoch: int) -> ConfusionEstimate:
    """Per given class, the share of its labels moved there from one other class, from `log_probs` (N, classes),
    the mean log-probabilities of the window; `spread` is the decoy estimate per class (noise.py), whose floor
    (`spread_floor`) a confusion must exceed by MIN_CONFUSED_SHARE to count. Samples not `usable` (or with NaN)
    take no part."""
    classes = log_probs.shape[1]
    usable = _measured(log_probs, usable)
    floor = spread_floor(spread)
    share, source = np.zeros(classes), np.full(classes, -1, np.int64)
    members_of = [np.flatnonzero(usable & (labels == label)) for label in range(classes)]

    def moved_share(label: int, origin: int) -> float:
        """Share of the images labelled `label` that score like the images labelled `origin`."""
        members, reference = members_of[label], members_of[origin]
        return smallest_tail_ratio(log_probs[members, origin] - log_probs[members, label],
                                   log_probs[reference, origin] - log_probs[reference, label])

    for label, members in enumerate(members_of):
        if len(members) < MIN_DECOYS:
            continue
        mass = np.exp(log_probs[members]).mean(axis=0)
        mass[label] = -1.0
        candidates = [int(origin) for origin in np.argsort(-mass)[:CANDIDATES]
                      if len(members_of[origin]) >= MIN_DECOYS]
        if not candidates:
            continue
        best, origin = max((moved_share(label, origin), origin) for origin in candidates)
        # Half or more of each class scoring like the other is a network that cannot tell the two apart (or
        # labels random between them), not labels moved one way: a swap of 40% both ways sums to 0.8.
        if best - floor[label] >= MIN_CONFUSED_SHARE and best + moved_share(origin, label) < 1.0:
            share[label], source[label] = best, origin
    return ConfusionEstimate(share, source, epoch)


def spread_floor(spread: np.ndarray) -> np.ndarray:
    """Per class, the share of its labels the decoy estimate already accounts for: its own estimate, but never
    less than the overall one (the mean of the classes'), since one class's estimate can come out low by chance
    while a weak network still mixes that class up with another in the middle of training. A confusion counts,
    and is left out, only beyond it."""
    spread = np.nan_to_num(np.asarray(spread, np.float64))
    return np.maximum(spread, spread.mean())


def confused_samples(log_probs: np.ndarray, labels: np.ndarray, usable: np.ndarray, sample_ids: list[str],
                     estimate: ConfusionEstimate, spread: np.ndarray) -> np.ndarray:
    """Mask of the confused samples: in each confused class c, the images labelled c that score most like their
    source class k (log p(k) - log p(c)), as many as its confused share exceeds the floor of the decoy estimates
    `spread` (`spread_floor`), about the share the loss ranking already leaves out; ties by sample id as in every
    selection. Only the excess: under spread noise a weaker network still mixes up a few classes in the middle of
    training, and leaving out their whole share would drop right labels the loss ranking keeps."""
    confused_classes = np.flatnonzero(estimate.source >= 0)
    if not len(confused_classes):
        return np.zeros(len(labels), bool)
    rows = np.arange(len(labels))
    safe_labels = np.where(labels >= 0, labels, 0)
    source = estimate.source[safe_labels]
    score = np.where(source >= 0, log_probs[rows, np.maximum(source, 0)] - log_probs[rows, safe_labels], -np.inf)
    floor = spread_floor(spread)
    shares = {int(label): max(0.0, float(estimate.share[label] - floor[label])) for label in confused_classes}
    usable = _measured(log_probs, usable)
    return ~select_kept(score, sample_ids, 0.0, usable, labels, shares) & usable


def _measured(log_probs: np.ndarray, usable: np.ndarray) -> np.ndarray:
    return np.asarray(usable, bool) & ~np.isnan(log_probs).any(axis=1)
