"""Labels moved from one class to one other class, over and over (truck images labelled automobile): finding them.

The decoy estimate (noise.py) sees wrong labels spread over the other classes. A wrong label that repeats one
confusion is a pattern the network learns: on a truck it looks like a likely class, not like a decoy, and early in
training the network mixes the two classes up anyway. Such labels show later. By the middle of training the
network has fitted the right labels of the images it found hard at first, so on clean data the images labelled c
no longer score like the images labelled k. Labels moved from k to c are fitted much later, because most images
of k that look like them carry the label k: they keep scoring like the images labelled k.

So for each given class c and a candidate source class k, with the score log p(k) - log p(c) averaged over the
WINDOW_EPOCHS epochs ending at CONFUSION_AT of the training, and again at COUNT_AT, the share of the images
labelled c that score like those labelled k is estimated as in noise.py (the smallest ratio of tail shares, Scott
2015), the images labelled k standing for images of k (`read_confusion`). The largest share over the candidates
and the two readings (`stronger_reading`) is the class's confused share if it sums with the reverse share (k
scoring like c) to under 1 and, once the noise rate is known (the decoy
estimate raised to the plausible mistakes counted at COUNT_AT, floored at the mean of the classes' rates,
`spread_floor`), exceeds it by MIN_CONFUSED_SHARE or more (`confusion_beyond`). Its confused samples, left out of
training from then on, are the images labelled c that scored most like k, as many as the share exceeds that floor
(the loss ranking leaves out about the noise rate already). On clean data the shares are 0 by then.
docs/METHOD.md, "Labels confused with one other class", has the formulas and the measurements.

The window's log-probabilities come in one of two forms. Where every sample's probabilities fit (MAX_CELLS), an
(N, classes) array. Beyond, `TopLogProbs`: per sample those of its TOP_CLASSES most likely classes other than its
label (fixed at the window's first epoch), of its label, and of the mean of the rest, which stands in for any class
outside them; O(N x TOP_CLASSES) memory. Both give the same estimate where TOP_CLASSES covers every other class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labelscrub.noise import MIN_DECOYS, smallest_tail_ratio
from labelscrub.schedule import select_kept

# The confusion estimate reads the epochs ending at this share of the training, and again with the count (COUNT_AT),
# each class taking the stronger reading. Earlier, clean data still shows natural confusions the network has not
# resolved yet; later, the moved labels are being fitted and look right. On the CPU protocol (32 px, 30 epochs,
# offline on the dumps of plain training) 40% of trucks labelled automobile, birds airplane and deer horse, cats and
# dogs swapped (20% wrong) read 18.8%, 11.9% and 11.5% (seeds 0-2) with the window ending at 40%, 11.1%, 11.9%
# and 11.8% at 55%, 18.8%, 15.9% and 15.5% with both; clean CIFAR-10 reads 0% at 40% (0.6% at 33%); CIFAR-10N's
# human labels read the same with both as at 55% alone. docs/METHOD.md, "Labels confused with one other class".
CONFUSION_AT = 0.4
# The plausible-mistake count (mistakes.py) reads the epochs ending here: by then the network has fitted the right
# labels of hard images and not yet memorised the wrong ones. Step-E with auto drops nothing until then, confused
# samples included, and a confusion counts only beyond that count, so the confusion estimate's reading waits for it.
COUNT_AT = 0.55
# Each window averages this many epochs' log-probabilities: one epoch's augmentations make the score jumpy.
WINDOW_EPOCHS = 3
# Source classes tried per class: those the network gives most probability on the images labelled with it.
CANDIDATES = 3
# A class counts as confused only when its share exceeds the floor of the noise rate by this much: below it a
# leftover natural confusion is as likely.
MIN_CONFUSED_SHARE = 0.05
# Up to this many (samples x classes) probabilities every class's are kept: 2**27 float32 values are 512 MiB
# (CIFAR-100's 50,000 x 100 are 5 million); beyond, TopLogProbs.
MAX_CELLS = 2**27
# Beyond MAX_CELLS, the classes other than its label read per sample: a source the estimate tries is a class the
# network finds likely on the images concerned, among their few most likely even where a class has many look-alikes
# (ImageNet's 120 dog breeds); 12 bytes each a sample on the device, 8 on the host.
TOP_CLASSES = 16


@dataclass(frozen=True)
class ConfusionEstimate:
    share: np.ndarray  # (classes,) float64 share of each given class moved there from `source`; 0 = none found
    source: np.ndarray  # (classes,) int64 the class its confused labels came from; -1 = none
    epoch: int  # the epoch (0-based) after which it was made
    classes_read: int | None = None  # beyond MAX_CELLS, the classes read per sample (TopLogProbs); None: every class

    def to_state(self) -> dict:
        state = {"confusion_share": self.share, "confusion_source": self.source, "confusion_epoch": self.epoch}
        return state if self.classes_read is None else {**state, "confusion_classes_read": self.classes_read}

    @classmethod
    def from_state(cls, state: dict) -> ConfusionEstimate | None:
        if "confusion_share" not in state:
            return None
        return cls(np.asarray(state["confusion_share"], np.float64), np.asarray(state["confusion_source"], np.int64),
                   int(state["confusion_epoch"]), state.get("confusion_classes_read"))


@dataclass(frozen=True)
class ConfusionReading:
    """What a window of mid-training epochs showed: per given class its largest share scoring like one candidate
    source, and per sample its score for its class's source. The confusion window's is kept until the count's
    window, read again, gives the noise rate a confusion must exceed (`stronger_reading`, `confusion_beyond`)."""

    share: np.ndarray  # (classes,) float64; 0 where no source was tried, or the two classes cannot be told apart
    source: np.ndarray  # (classes,) int64; -1 = none
    # (N,) float32 log p(source) - log p(label), averaged over the window: -inf where the sample's class has no
    # source, NaN where the sample was not measured every epoch of the window or is not usable
    score: np.ndarray
    epoch: int  # the epoch (0-based) after which it was read
    classes_read: int | None = None  # as in ConfusionEstimate

    def to_state(self) -> dict:
        state = {"confusion_read_share": self.share, "confusion_read_source": self.source,
                 "confusion_read_score": self.score, "confusion_read_epoch": self.epoch}
        return state if self.classes_read is None else {**state, "confusion_read_classes": self.classes_read}

    @classmethod
    def from_state(cls, state: dict) -> ConfusionReading | None:
        if "confusion_read_share" not in state:
            return None
        return cls(np.asarray(state["confusion_read_share"], np.float64),
                   np.asarray(state["confusion_read_source"], np.int64),
                   np.asarray(state["confusion_read_score"], np.float32), int(state["confusion_read_epoch"]),
                   state.get("confusion_read_classes"))


def count_epochs(epochs: int, after: int) -> range:
    """The epochs (0-based) whose log-probabilities the plausible-mistake count averages (mistakes.py), the count
    being made after the last of them; empty when that window would not start after epoch `after` (the decoy
    estimate's last epoch): a run that short has no middle to read."""
    return _window_ending(COUNT_AT, epochs, after)


def epochs_to_count(after: int) -> int:
    """The fewest epochs a run needs for the count's window (`count_epochs`) to start after epoch `after`."""
    epochs = after + 1
    while not len(count_epochs(epochs, after)):
        epochs += 1
    return epochs


def confusion_epochs(epochs: int, after: int) -> range:
    """The epochs (0-based) the confusion estimate averages: those ending at CONFUSION_AT of the training where
    they start after epoch `after` and end before the count's window starts, else the count's window (a short run
    reads both at once)."""
    count = count_epochs(epochs, after)
    early = _window_ending(CONFUSION_AT, epochs, after)
    return early if len(count) and len(early) and early[-1] < count[0] else count


def _window_ending(share: float, epochs: int, after: int) -> range:
    last = math.ceil(share * epochs) - 1
    first = last - WINDOW_EPOCHS + 1
    return range(first, last + 1) if first > after else range(0)


def fits_in_memory(samples: int, classes: int) -> bool:
    return samples * classes <= MAX_CELLS


def top_count(classes: int) -> int:
    """How many classes TopLogProbs reads per sample: TOP_CLASSES, or every class but the label if fewer."""
    return max(1, min(TOP_CLASSES, classes - 1))


# TopLogProbs in a checkpoint: its four arrays under these keys.
_TOP_STATE = ("confusion_top_classes", "confusion_top_log_probs", "confusion_label_log_probs",
              "confusion_rest_log_probs")


@dataclass(frozen=True)
class TopLogProbs:
    """Per sample, log-probabilities summed (or averaged, `mean`) over the window's epochs: of M classes other than
    its label, read every epoch once chosen as its most likely at the window's first epoch, of its given label, and
    of the mean probability of the classes neither read nor its label. That mean stands in for any of those
    classes: it is what an unread class holds on average, and never more than a read one, so a sample's unread
    classes never outrank its read ones. NaN (classes -1) where a sample was not measured every epoch."""

    classes: np.ndarray  # (N, M) int32
    top: np.ndarray  # (N, M) float32
    label: np.ndarray  # (N,) float32
    rest: np.ndarray  # (N,) float32; -inf where the M classes are every class but the label

    def plus(self, epoch: TopLogProbs) -> TopLogProbs:
        """With one more epoch's, read at the same classes; a sample read at others (not measured at the first
        epoch) becomes unmeasured."""
        same = (epoch.classes == self.classes).all(axis=1)
        top = np.where(same[:, None], self.top + epoch.top, np.float32(np.nan))
        return TopLogProbs(self.classes, top, self.label + epoch.label, self.rest + epoch.rest)

    def mean(self, epochs: int) -> TopLogProbs:
        return TopLogProbs(self.classes, self.top / epochs, self.label / epochs, self.rest / epochs)

    def to_state(self) -> dict:
        return dict(zip(_TOP_STATE, (self.classes, self.top, self.label, self.rest)))

    @classmethod
    def from_state(cls, state: dict) -> TopLogProbs | None:
        if _TOP_STATE[0] not in state:
            return None
        return cls(*(np.asarray(state[key]) for key in _TOP_STATE))

    def at(self, rows: np.ndarray, classes: np.ndarray | int, labels: np.ndarray) -> np.ndarray:
        """Log-probability of `classes` (one per row, or one for all) for the samples `rows` of `labels`."""
        classes = np.broadcast_to(classes, rows.shape)
        hit = self.classes[rows] == classes[:, None]
        read = np.take_along_axis(self.top[rows], hit.argmax(axis=1)[:, None], axis=1)[:, 0]
        value = np.where(hit.any(axis=1), read, self.rest[rows])
        return np.where(classes == labels[rows], self.label[rows], value)

    def mass(self, rows: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """Mean probability over `rows` of every class: what the read ones hold, the stand-in elsewhere."""
        rest = np.exp(self.rest[rows].astype(np.float64))
        total = np.full(num_classes, rest.sum())
        read = np.exp(self.top[rows].astype(np.float64)) - rest[:, None]
        np.add.at(total, self.classes[rows].ravel(), read.ravel())
        np.add.at(total, labels[rows], np.exp(self.label[rows].astype(np.float64)) - rest)
        return total / max(1, len(rows))

    def measured(self) -> np.ndarray:
        return ~(np.isnan(self.label) | np.isnan(self.rest) | np.isnan(self.top).any(axis=1))


@dataclass(frozen=True)
class _Every:
    """Every class's log-probabilities, (N, classes): read as TopLogProbs is."""

    values: np.ndarray

    def at(self, rows: np.ndarray, classes: np.ndarray | int, labels: np.ndarray) -> np.ndarray:
        return self.values[rows, classes]

    def mass(self, rows: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
        return np.exp(self.values[rows]).mean(axis=0)

    def measured(self) -> np.ndarray:
        return ~np.isnan(self.values).any(axis=1)


def read_confusion(log_probs: np.ndarray | TopLogProbs, labels: np.ndarray, usable: np.ndarray, num_classes: int,
                   *, epoch: int) -> ConfusionReading:
    """What the window shows, from `log_probs`, its mean log-probabilities ((N, classes), or TopLogProbs): per given
    class the largest share scoring like one of its candidate sources, and every sample's score for its class's
    source. Samples not `usable` (or with NaN) take no part."""
    window = _window(log_probs)
    usable = _measured(window, usable)
    share, source = np.zeros(num_classes), np.full(num_classes, -1, np.int64)
    members_of = [np.flatnonzero(usable & (labels == label)) for label in range(num_classes)]

    def moved_share(label: int, origin: int) -> float:
        """Share of the images labelled `label` that score like the images labelled `origin`."""
        members, reference = members_of[label], members_of[origin]
        return smallest_tail_ratio(window.at(members, origin, labels) - window.at(members, label, labels),
                                   window.at(reference, origin, labels) - window.at(reference, label, labels))

    for label, members in enumerate(members_of):
        if len(members) < MIN_DECOYS:
            continue
        mass = window.mass(members, labels, num_classes)
        mass[label] = -1.0
        candidates = [int(origin) for origin in np.argsort(-mass)[:CANDIDATES]
                      if len(members_of[origin]) >= MIN_DECOYS]
        if not candidates:
            continue
        best, origin = max((moved_share(label, origin), origin) for origin in candidates)
        # Half or more of each class scoring like the other is a network that cannot tell the two apart (or
        # labels random between them), not labels moved one way: a swap of 40% both ways sums to 0.8.
        if best + moved_share(origin, label) < 1.0:
            share[label], source[label] = best, origin
    return ConfusionReading(share, source, source_scores(log_probs, labels, usable, source), epoch,
                            window.classes.shape[1] if isinstance(window, TopLogProbs) else None)


def source_scores(log_probs: np.ndarray | TopLogProbs, labels: np.ndarray, usable: np.ndarray,
                  source: np.ndarray) -> np.ndarray:
    """Per sample, how much more likely the window finds the `source` of its class than its label: log p(source) -
    log p(label), -inf where its class has no source (-1), NaN where the sample is not usable or not measured."""
    window = _window(log_probs)
    rows = np.arange(len(labels))
    safe_labels = np.where(labels >= 0, labels, 0)
    origin = source[safe_labels]
    score = np.where(origin >= 0, window.at(rows, np.maximum(origin, 0), safe_labels)
                     - window.at(rows, safe_labels, safe_labels), -np.inf).astype(np.float32)
    score[~_measured(window, usable)] = np.nan
    return score


def stronger_reading(early: ConfusionReading, late: ConfusionReading, labels: np.ndarray) -> ConfusionReading:
    """Per class, the reading that finds the larger share, with its source and its samples' scores; made after the
    later one. Moved labels fade as the network fits them and natural confusions as it learns, so either window can
    see more: 40% of cats and dogs swapped read as two classes the network cannot tell apart at 40% of the training
    (two seeds of three) and as a swap at 55%, while by then the other moved classes were half fitted."""
    takes_late = late.share > early.share
    per_sample = takes_late[np.where(labels >= 0, labels, 0)]
    return ConfusionReading(np.where(takes_late, late.share, early.share),
                            np.where(takes_late, late.source, early.source),
                            np.where(per_sample, late.score, early.score), late.epoch, late.classes_read)


def confusion_beyond(reading: ConfusionReading, spread: np.ndarray) -> ConfusionEstimate:
    """The confused classes of `reading`: those whose share exceeds the floor (`spread_floor`) of the noise rate
    per class `spread` by MIN_CONFUSED_SHARE or more."""
    floor = spread_floor(spread)
    confused = (reading.source >= 0) & (reading.share - floor >= MIN_CONFUSED_SHARE)
    return ConfusionEstimate(np.where(confused, reading.share, 0.0), np.where(confused, reading.source, -1),
                             reading.epoch, reading.classes_read)


def estimate_confusion(log_probs: np.ndarray | TopLogProbs, labels: np.ndarray, usable: np.ndarray,
                       spread: np.ndarray, *, epoch: int) -> ConfusionEstimate:
    """Per given class, the share of its labels moved there from one other class, from the window's mean
    log-probabilities `log_probs` (`read_confusion`), where it exceeds the noise rate per class `spread` as
    `confusion_beyond` asks."""
    return confusion_beyond(read_confusion(log_probs, labels, usable, len(spread), epoch=epoch), spread)


def spread_floor(spread: np.ndarray) -> np.ndarray:
    """Per class, the share of its labels the decoy estimate already accounts for: its own estimate, but never
    less than the overall one (the mean of the classes'), since one class's estimate can come out low by chance
    while a weak network still mixes that class up with another in the middle of training. A confusion counts,
    and is left out, only beyond it."""
    spread = np.nan_to_num(np.asarray(spread, np.float64))
    return np.maximum(spread, spread.mean())


def confused_samples(reading: ConfusionReading, labels: np.ndarray, usable: np.ndarray, sample_ids: list[str],
                     estimate: ConfusionEstimate, spread: np.ndarray) -> np.ndarray:
    """Mask of the confused samples: in each confused class c, the images labelled c that scored most like their
    source class k in the window of `reading` (log p(k) - log p(c)), as many as its confused share exceeds the
    floor of the noise rates `spread` (`spread_floor`), about the share the loss ranking already leaves out; ties
    by sample id as in every selection. Only the excess: under spread noise a weaker network still mixes up a few
    classes in the middle of training, and leaving out their whole share would drop right labels the loss ranking
    keeps."""
    confused_classes = np.flatnonzero(estimate.source >= 0)
    if not len(confused_classes):
        return np.zeros(len(labels), bool)
    floor = spread_floor(spread)
    shares = {int(label): max(0.0, float(estimate.share[label] - floor[label])) for label in confused_classes}
    usable = np.asarray(usable, bool) & ~np.isnan(reading.score)
    return ~select_kept(reading.score, sample_ids, 0.0, usable, labels, shares) & usable


def _window(log_probs: np.ndarray | TopLogProbs) -> TopLogProbs | _Every:
    return log_probs if isinstance(log_probs, TopLogProbs) else _Every(log_probs)


def _measured(window: TopLogProbs | _Every, usable: np.ndarray) -> np.ndarray:
    return np.asarray(usable, bool) & window.measured()
