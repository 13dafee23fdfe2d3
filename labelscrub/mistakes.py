"""Labels a person got wrong: counting the mistakes that look plausible to the network.

The decoy estimate (noise.py) compares each given label with a decoy drawn uniformly from the other classes: what a
label wrong at random looks like. People do not err at random: an annotator who gets an image wrong picks a class
the image resembles (a cat labelled dog, seldom truck), a class the network finds likely too. Such labels look less
wrong than decoys, so the decoy estimate counts only part of them (on CIFAR-10N's worst labels, 40% wrong, about a
third).

Here what a wrong label c looks like is how c looks on the images of other classes, each image weighted by how
likely the network finds c on it, p(c)^PLAUSIBILITY: as often as an annotator's slip to c would happen there. An
image's likeliest class is left out of its weights unless it is the given label: it is the image's probable truth,
not a slip. How wrong a label looks is how far below the likeliest class the network puts it, log p(top) -
log p(label), from the log-probabilities averaged over the confusion window (confusion.py), in the middle of
training. In the warm-up, right labels of hard images still look like plausible mistakes (on CIFAR-10N's aggre
labels, 9% wrong, the count reads 19% there); by the middle the network has fitted most of them and not yet
memorised the wrong labels. The count needs a network trained on every sample: a label withheld from training
stays unfitted and looks like a mistake however right it is, while the wrong labels still trained on are the ones
that look right (CIFAR-10N worst, Step-E dropping the decoy estimate from the warm-up on: 54% read against 40%). So
with --rho-max auto, Step-E drops nothing until the count is read (task.Task.waits_for_the_count).

Per given class the share is the smallest tail ratio against that reference, as in noise.py. A class's rate is the
larger of it and the decoy estimate (`combined_rates`). PLAUSIBILITY below 1 weights the reference a little towards
the less likely classes: at 1 the count takes more right labels of hard images for mistakes, and labels wrong at
random for plausible ones. Where the labels the network confidently disagrees with gather on look-alike classes,
as people's slips do and random ones do not (`disagreement_evenness`), the wrong labels are mostly people's, and
the count reads closer to the network's belief; where they spread evenly, they are random ones, which the decoys
read short and the count over, and the two are averaged (`count_mistakes`, `towards_people`). Even so, on clean
data the count reads the right labels of the hardest images (clean CIFAR-10: 2.1%, most of it cats, birds, deer
and dogs), so it counts only where the decoys see some labels wrong at random (`count_is_used`): people also slip
at random, and on CIFAR-10N's labels the decoys see a quarter to two fifths of the mistakes. docs/METHOD.md,
"Plausible mistakes", has the measurements.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from labelscrub.noise import MIN_DECOYS, NoiseEstimate, overall_rate, smallest_tail_ratio

# The exponent of p(c) in the reference weights: 0 is the decoy estimate's uniform reference, 1 the network's own
# belief. Chosen on CIFAR-10N (worst, random1, aggre) and planted noise (40% symmetric, the digits sample): 0.95
# reads worst within 7 points instead of 11, but 40% symmetric noise 7 points over; docs/METHOD.md.
PLAUSIBILITY = 0.85

# Where the wrong labels are people's mistakes rather than random ones, the count reads with the reference at
# HUMAN_PLAUSIBILITY, closer to the network's own belief (`towards_people` says how far). Chosen on seed 0 of
# CIFAR-10N dev (worst, random1, aggre) and the planted 40% symmetric noise: at 0.975 the count reads worst 34.4%
# instead of 28.9% (40.2% wrong), random1 20.6% instead of 16.3% (17.1%), aggre 10.2% instead of 7.0% (8.7%). At
# 1, random1 reads 21.8%, near the 5 points over that a user would notice; docs/METHOD.md. Where the evenness
# cannot be read, the decoy share tells: at most MOSTLY_PLAUSIBLE of what the count at PLAUSIBILITY reads, most
# wrong labels are people's, from WRONG_AT_RANDOM on random ones (the decoys see 44% of the count on worst, 28% on
# random1, 39% on aggre, 76% at sym40).
HUMAN_PLAUSIBILITY = 0.975
MOSTLY_PLAUSIBLE = 0.5
WRONG_AT_RANDOM = 0.7

# The decoy share does not always tell people's mistakes from random ones: on CIFAR-10N worst the decoys see
# 0.45-0.62 of the first count from one seed or slice to the next, at 10% and 20% symmetric noise 0.47 and 0.61.
# Where the network confidently disagrees with labels tells better (`disagreement_evenness`): gathered on a few
# look-alike classes, at most PEOPLE_S_EVENNESS, they are people's mistakes and the exponent is HUMAN_PLAUSIBILITY;
# spread evenly, from WRONG_AT_RANDOM_EVENNESS on, they are random ones and it is PLAUSIBILITY; linear in between.
# The decoy share decides only where the evenness cannot be read. Chosen on seeds 0-1 of CIFAR-10N dev (worst
# 0.799 and 0.806, random1 0.722 and 0.709) and seed 0 of planted symmetric noise (10%: 0.889, 20%: 0.952, 40%:
# 0.956); docs/METHOD.md.
PEOPLE_S_EVENNESS = 0.82
WRONG_AT_RANDOM_EVENNESS = 0.87
# A disagreement counts towards the evenness where the network gives its likeliest class at least this probability
# (the geometric mean over the window): an image the network is unsure of is as often a hard image with a right
# label, and hard images gather on look-alike classes whatever the noise (over all disagreements, clean CIFAR-10
# reads 0.78, CIFAR-10N worst 0.87 and 10% symmetric noise 0.90: too close to tell).
CONFIDENT_DISAGREEMENT = 0.5

# The least share of labels the decoy estimate must find wrong at random for the count to be used. On CIFAR-10N it
# reads 2-15% where 9-40% are wrong; on clean CIFAR-10 0.2%, where the count reads 2.1% of right labels.
MIN_RANDOM_SHARE = 0.005


@dataclass(frozen=True)
class MistakeEstimate:
    per_class: np.ndarray  # (classes,) float64 share of plausible mistakes per given class; NaN where not read
    epoch: int  # the epoch (0-based) after which it was made
    plausibility: float = PLAUSIBILITY  # the exponent of p(c) in the reference it was read with
    evenness: float = float("nan")  # `disagreement_evenness` of the window, where `count_mistakes` read it

    def to_state(self) -> dict:
        return {"mistakes_per_class": self.per_class, "mistakes_epoch": self.epoch,
                "mistakes_plausibility": self.plausibility, "mistakes_evenness": self.evenness}

    @classmethod
    def from_state(cls, state: dict) -> MistakeEstimate | None:
        if "mistakes_per_class" not in state:
            return None
        return cls(np.asarray(state["mistakes_per_class"], np.float64), int(state["mistakes_epoch"]),
                   float(state.get("mistakes_plausibility", PLAUSIBILITY)),
                   float(state.get("mistakes_evenness", float("nan"))))


def count_mistakes(log_probs, labels: np.ndarray, usable: np.ndarray, num_classes: int, noise: NoiseEstimate, *,
                   epoch: int) -> MistakeEstimate:
    """The plausible-mistake count as `clean` uses it: read at an exponent between PLAUSIBILITY and
    HUMAN_PLAUSIBILITY as far as the wrong labels look like people's mistakes rather than random ones
    (`towards_people`, from `disagreement_evenness`, kept in the result). As far as they look random, each class's
    count is averaged with the decoy estimate `noise`: there the decoys read short, since the network has begun to
    fit the wrong labels it trains on and never trains on the decoys, and the count reads over, taking right labels
    of hard images for slips (10%, 20% and 40% symmetric noise on 10,000 CIFAR-10 images: the decoys 7.9%, 16.5%
    and 33.6%, the count 16.7%, 27.2% and 43.4%; their mean 12.4%, 21.8% and 38.9%). Arguments as
    `estimate_mistakes`."""
    evenness = disagreement_evenness(log_probs, labels, usable, num_classes)
    first = estimate_mistakes(log_probs, labels, usable, num_classes, epoch=epoch)
    if not count_is_used(noise, first) or np.isnan(first.per_class).all():
        return dataclasses.replace(first, evenness=evenness)
    sizes = np.bincount(labels[np.asarray(usable, bool) & (labels >= 0)], minlength=num_classes)
    people = towards_people(noise, first, sizes, evenness)
    plausibility = float(PLAUSIBILITY + people * (HUMAN_PLAUSIBILITY - PLAUSIBILITY))
    if plausibility != first.plausibility:
        first = estimate_mistakes(log_probs, labels, usable, num_classes, epoch=epoch, plausibility=plausibility)
    over_decoys = np.fmax(first.per_class - noise.per_class, 0.0)
    return dataclasses.replace(first, per_class=first.per_class - (1 - people) / 2 * over_decoys, evenness=evenness)


def towards_people(noise: NoiseEstimate, first: MistakeEstimate, sizes: np.ndarray,
                   evenness: float = float("nan")) -> float:
    """How far the wrong labels look like people's mistakes (1) rather than random ones (0): 1 at an `evenness` of
    PEOPLE_S_EVENNESS or less, 0 from WRONG_AT_RANDOM_EVENNESS on, linear in between. Where the evenness is not
    known (NaN), the decoy share of the count `first` (read at PLAUSIBILITY) decides: 1 where the decoy estimate
    is at most MOSTLY_PLAUSIBLE of it, 0 from WRONG_AT_RANDOM on, linear in between."""
    if np.isnan(evenness):
        towards = (WRONG_AT_RANDOM - decoy_share(noise, first, sizes)) / (WRONG_AT_RANDOM - MOSTLY_PLAUSIBLE)
    else:
        towards = (WRONG_AT_RANDOM_EVENNESS - evenness) / (WRONG_AT_RANDOM_EVENNESS - PEOPLE_S_EVENNESS)
    return float(np.clip(towards, 0.0, 1.0))


def disagreement_evenness(log_probs, labels: np.ndarray, usable: np.ndarray, num_classes: int) -> float:
    """How evenly the given labels the network confidently disagrees with spread over the classes: over the
    `usable` samples whose likeliest class (from `log_probs`, as `estimate_mistakes` takes them) is not their label
    and has at least CONFIDENT_DISAGREEMENT of probability, per likeliest class the entropy of their given labels
    over the num_classes - 1 others, divided by its most, averaged with each likeliest class's share of those
    samples as weight. Near 1 where labels are wrong at random (planted symmetric noise on CIFAR-10: 0.89-0.96),
    lower where they gather on look-alike classes, as people's mistakes do (CIFAR-10N: 0.65-0.81), as the network's
    own errors on hard images do (clean CIFAR-10: 0.58) and as labels moved to one other class do (0.28-0.34). NaN
    where fewer than MIN_DECOYS samples are such, or there are fewer than 3 classes."""
    label_log_probs, read, usable = _read_window(log_probs, labels, usable)
    best = read.argmax(axis=1)
    every = isinstance(log_probs, np.ndarray)
    likeliest = best if every else np.take_along_axis(log_probs.classes, best[:, None], axis=1)[:, 0]
    most = read.max(axis=1)
    confident = most >= np.log(CONFIDENT_DISAGREEMENT)
    disagree = usable & (labels >= 0) & (most > label_log_probs) & (likeliest != labels) & confident
    if num_classes < 3 or disagree.sum() < MIN_DECOYS:
        return float("nan")
    cells = np.zeros((num_classes, num_classes))
    np.add.at(cells, (likeliest[disagree], labels[disagree]), 1.0)
    per_likeliest = cells.sum(axis=1)
    shares = cells / np.maximum(per_likeliest[:, None], 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(shares > 0, shares * np.log(shares), 0.0).sum(axis=1)
    return float(np.dot(per_likeliest / per_likeliest.sum(), entropy) / np.log(num_classes - 1))


def decoy_share(noise: NoiseEstimate, first: MistakeEstimate, sizes: np.ndarray) -> float:
    """The share of the count `first` (each class raised to it as `combined_rates` does, weighted by the class
    `sizes`) that the decoy estimate `noise` sees as wrong at random: what `towards_people` reads where the
    evenness cannot be read."""
    counted = overall_rate(combined_rates(noise, first), sizes)
    return noise.overall / counted if counted > 0 else 1.0


def estimate_mistakes(log_probs, labels: np.ndarray, usable: np.ndarray, num_classes: int, *,
                      epoch: int, plausibility: float = PLAUSIBILITY) -> MistakeEstimate:
    """Per given class, the share of labels that look like plausible mistakes, from the window's mean
    log-probabilities `log_probs`: an (N, classes) array, or confusion.TopLogProbs, whose classes outside those read
    per sample weigh nothing (each is less likely than every read one). Samples not `usable`, or with NaN, take no
    part; a class with fewer than MIN_DECOYS members, or whose reference weighs nothing, is NaN. `plausibility`:
    the exponent of p(c) in the reference weights."""
    every = isinstance(log_probs, np.ndarray)
    label_log_probs, read, usable = _read_window(log_probs, labels, usable)
    likeliest = np.maximum(read.max(axis=1), label_log_probs)
    depth_given = likeliest - label_log_probs
    references = _every_class_reference if every else _read_class_reference
    per_class = np.full(num_classes, np.nan)
    cells = references(log_probs, labels, usable, likeliest, num_classes, plausibility)
    for label, (depth, weight) in enumerate(cells):
        members = usable & (labels == label)
        if members.sum() >= MIN_DECOYS and len(weight) and weight.sum() > 0:
            per_class[label] = smallest_tail_ratio(depth_given[members], depth, weight)
    return MistakeEstimate(per_class, epoch, plausibility)


def count_is_used(noise: NoiseEstimate, mistakes: MistakeEstimate | None) -> bool:
    """Whether the plausible-mistake count raises the decoy estimate `noise`: not where the decoy estimate is
    doubted for the network (noise.doubt_estimate: near chance, too few samples per class, a run too short), which
    is no better a judge of plausible mistakes, nor where it finds under MIN_RANDOM_SHARE wrong, where the data
    looks clean and the count would read the right labels of hard images. A decoy estimate doubted only because it
    was still falling does not stop the count: that says the network was still learning in the warm-up, and the
    count is read in mid-training, long after (CIFAR-10N dev, random1 and aggre: the decoy estimate, a few percent,
    still fell by 26-30% in its last epoch, while the count read 16.3% of 17.1% and 7.0% of 8.7%)."""
    trusted = noise.doubt is None or noise.only_still_falling
    return mistakes is not None and trusted and noise.overall >= MIN_RANDOM_SHARE


def doubt_is_settled(noise: NoiseEstimate, mistakes: MistakeEstimate | None) -> bool:
    """Whether a doubted decoy estimate no longer stands for the final one: the plausible-mistake count was read
    for some class and used past the doubt (`count_is_used`), so run.json and the console need not warn."""
    return (noise.doubt is not None and count_is_used(noise, mistakes)
            and not bool(np.isnan(mistakes.per_class).all()))


def combined_rates(noise: NoiseEstimate, mistakes: MistakeEstimate | None) -> np.ndarray:
    """Per class the estimated share of wrong labels: the decoy estimate, raised to the plausible-mistake share
    where that is read and used (`count_is_used`)."""
    if not count_is_used(noise, mistakes):
        return noise.per_class
    return np.where(np.isnan(mistakes.per_class), noise.per_class, np.fmax(noise.per_class, mistakes.per_class))


def _reference(depth: np.ndarray, log_probs: np.ndarray, plausibility: float) -> tuple[np.ndarray, np.ndarray]:
    """Depths and weights p^plausibility of the cells that count: depth 0 is the likeliest class, left out, and
    an infinite depth is a class that holds nothing (a stand-in for no unread class)."""
    counts = (depth > 0) & np.isfinite(depth)
    return depth[counts], np.exp(plausibility * log_probs[counts].astype(np.float64))


def _every_class_reference(log_probs: np.ndarray, labels: np.ndarray, usable: np.ndarray, likeliest: np.ndarray,
                           num_classes: int, plausibility: float):
    """Per class c, the reference cells of the samples not labelled c: a column at a time, O(N) memory."""
    for label in range(num_classes):
        others = usable & (labels != label)
        yield _reference(likeliest[others] - log_probs[others, label], log_probs[others, label], plausibility)


def _read_class_reference(top, labels: np.ndarray, usable: np.ndarray, likeliest: np.ndarray, num_classes: int,
                          plausibility: float):
    """Per class c, the reference cells of the samples whose read classes include c (TopLogProbs never reads a
    sample's label among them), plus every sample's unread classes at their stand-in log-probability (`rest`):
    a class outside a sample's read ones is one of its unread, so each sample's stand-in cell counts for every
    class with the weight of one unread class out of all its other classes. Unread classes are the unlikely ones:
    left out, the reference would lack its deep tail and the count would read far too high."""
    read_count = top.classes.shape[1]
    unread_share = max(0, num_classes - 1 - read_count) / max(1, num_classes - 1)
    rest_depth, rest_weight = _reference(likeliest[usable] - top.rest[usable], top.rest[usable], plausibility)
    rest_weight = rest_weight * unread_share
    classes = np.where(usable[:, None], top.classes, -1).ravel()
    order = np.argsort(classes, kind="stable")
    starts = np.searchsorted(classes[order], np.arange(num_classes + 1))
    log_probs = top.top.ravel()
    depth = (likeliest[:, None] - top.top).ravel()
    for label in range(num_classes):
        cells = order[starts[label]:starts[label + 1]]
        read_depth, read_weight = _reference(depth[cells], log_probs[cells], plausibility)
        yield np.concatenate([read_depth, rest_depth]), np.concatenate([read_weight, rest_weight])


def _read_window(log_probs, labels: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the window's mean log-probabilities (an (N, classes) array, or TopLogProbs): each sample's given label's
    log-probability, the log-probabilities read beside it (every class, or the read ones), and `usable` narrowed to
    the samples with no NaN in either."""
    every = isinstance(log_probs, np.ndarray)
    label_log_probs = _label_log_probs(log_probs, labels) if every else log_probs.label
    read = log_probs if every else log_probs.top
    return label_log_probs, read, np.asarray(usable, bool) & ~np.isnan(label_log_probs) & ~np.isnan(read).any(axis=1)


def _label_log_probs(log_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return log_probs[np.arange(len(labels)), np.maximum(labels, 0)]
