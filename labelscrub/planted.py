"""Planting label noise with known answers, and scoring a detector against them (for benchmarks and for users who
want to check labelscrub on their own clean data before trusting it on noisy data).

- `inject_noise`: symmetric (a uniformly random *other* class) or asymmetric (class -> a fixed confusable class)
  flips of an exact number of samples, chosen with a seeded generator; the true labels are left untouched.
- `instance_dependent_noise`: the kind people make. Hard, ambiguous images are the likeliest to get a wrong label,
  and it is the wrong class they look most like.
- `detection_scores`: precision, recall and F1 of a dropped set against the flipped set.
- `auroc`: how well a score ranks flipped above clean samples (Mann-Whitney, ties counted half).
"""

from __future__ import annotations

import numpy as np

# The usual asymmetric noise for CIFAR-10 (Patrini et al. 2017): confusions a human labeler plausibly makes.
CIFAR10_ASYMMETRIC = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}


def inject_noise(labels: np.ndarray, *, kind: str, rate: float, num_classes: int, seed: int,
                 mapping: dict[int, int] | None = None) -> np.ndarray:
    """Noisy copy of `labels`.

    - symmetric: exactly round(rate * N) samples, chosen uniformly, each moved to a uniformly random other class.
    - asymmetric: in every class c of `mapping`, exactly round(rate * |c|) of its samples move to mapping[c]
      (the overall noise rate is then `rate` times the share of mapped samples).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], not {rate}")
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    if kind == "symmetric":
        chosen = rng.choice(len(labels), size=round(rate * len(labels)), replace=False)
        noisy[chosen] = (labels[chosen] + rng.integers(1, num_classes, size=len(chosen))) % num_classes
    elif kind == "asymmetric":
        if not mapping:
            raise ValueError("asymmetric noise needs a class mapping")
        for source, target in sorted(mapping.items()):
            members = np.flatnonzero(labels == source)
            chosen = rng.choice(members, size=round(rate * len(members)), replace=False)
            noisy[chosen] = target
    else:
        raise ValueError(f"noise kind must be symmetric or asymmetric, not {kind!r}")
    return noisy


def instance_dependent_noise(labels: np.ndarray, reference: np.ndarray, *, rate: float, seed: int) -> np.ndarray:
    """Noisy copy of `labels` with instance-dependent noise, after the DNN-based scheme of Chen et al. 2021
    ("Beyond Class-Conditional Assumption", AAAI): a reference network trained on the clean labels gives each
    image its class probabilities `reference` (N, classes), which should be out-of-sample (out-of-fold) so they
    are not memorised. An image's mislabeling score is the largest probability among its wrong classes: how much it
    looks like something else. Exactly round(rate * N) images are mislabeled, each moved to that most likely wrong
    class.

    Chen et al. flip the round(rate * N) highest scores; here they are drawn without replacement with probability
    proportional to the score, so easy images are rarely but not never mislabeled (as with people), and the noise
    is not a hard threshold a detector could learn."""
    labels = np.asarray(labels, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.float64)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], not {rate}")
    if reference.ndim != 2 or reference.shape[0] != len(labels) or reference.shape[1] < 2:
        raise ValueError(f"reference must hold (samples, classes >= 2) probabilities, not shape {reference.shape}")
    if not np.isfinite(reference).all():
        raise ValueError(f"reference holds {int((~np.isfinite(reference)).sum())} values that are not finite: "
                         "the reference network diverged; compute it again")
    wrong = reference.copy()
    wrong[np.arange(len(labels)), labels] = -np.inf
    target = wrong.argmax(axis=1)
    # A tiny floor: an image the reference is certain of can still be mislabeled, and weights must not all be 0.
    score = np.maximum(wrong.max(axis=1), 1e-6)
    count = round(rate * len(labels))
    chosen = np.random.default_rng(seed).choice(len(labels), size=count, replace=False, p=score / score.sum())
    noisy = labels.copy()
    noisy[chosen] = target[chosen]
    return noisy


def noise_matrix(true_labels: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = given (noisy) label."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(true_labels, np.int64), np.asarray(noisy, np.int64)), 1)
    return matrix


def detection_scores(dropped: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of `dropped` (bool per sample) against the truly `flipped` samples."""
    dropped, flipped = np.asarray(dropped, bool), np.asarray(flipped, bool)
    hits = int((dropped & flipped).sum())
    precision = hits / dropped.sum() if dropped.any() else 0.0
    recall = hits / flipped.sum() if flipped.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "dropped": int(dropped.sum()), "flipped": int(flipped.sum())}


def auroc(scores: np.ndarray, flipped: np.ndarray) -> float:
    """Probability that a random flipped sample scores above a random clean one (NaN scores are left out)."""
    scores, flipped = np.asarray(scores, np.float64), np.asarray(flipped, bool)
    valid = ~np.isnan(scores)
    scores, flipped = scores[valid], flipped[valid]
    positives, negatives = int(flipped.sum()), int((~flipped).sum())
    if not positives or not negatives:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties, so a constant score gives exactly 0.5
    unique, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[flipped].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))
