"""Noise-rate estimators tried offline on the per-epoch dumps of `epoch_dumps.py`: which reads the truth best.

Each rule reads the measurements of a window of epochs (default: the ones `clean` reads, noise.evidence_epochs of
the run's warm-up) and returns the estimated share of wrong labels. Run by hand:

    python benchmarks/estimate_offline.py benchmarks/results/dumps/idn40-stepe-s0 --windows 3-5 6-8

Rules:
- decoy: labelscrub's estimate (noise.py), each label at its best depth over the window.
- mistakes: the plausible-mistake count (mistakes.py) on the window's mean log-probabilities.
- clean: what `clean --rho-max auto` ends with: the decoy estimate over clean's warm-up window, each class raised
  to its plausible mistakes over the confusion window (confusion.py), plus the confused share beyond that.
- confident-joint: cleanlab's count (Northcutt et al. 2021) on the window's mean probabilities, in-sample.
- disagree: the share of samples whose likeliest class (mean probability) is not the given label.

With --count-variants, `clean`'s estimate with other references for the plausible-mistake count (exponent a of p(c)):
- top a: each image's likeliest-class cell counts too (mistakes.py leaves it out).
- believed a: the likeliest-class cell counts in proportion to p(own label) / p(likeliest).
- own-label a: every cell weighted by p(own label) / p(likeliest), the likeliest cell left out.
- decoys-miss a: the likeliest-class cell counts in proportion to (1 - decoy estimate / count)^2 of its class.
- window E: the count over the three epochs ending at E (0-based) instead of clean's window.
- two-reference a: per class the members' depth tail fitted (non-negative least squares, thresholds at percentiles
  50-95 of the plausible reference) as r_random x the uniform reference's tail + r_plausible x the p^a one.

With --switches LOW-HIGH ..., `clean`'s estimate with the ends of the evenness that tells people's mistakes from
random ones (mistakes.PEOPLE_S_EVENNESS and WRONG_AT_RANDOM_EVENNESS) moved to each pair, beside that evenness and
the share of the first count the decoys see (which tells where the evenness cannot be read).

Rules tried here and rejected (BENCHMARKS.md, "What was tried and rejected") are in this file's git history.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import labelscrub.mistakes as mistakes_module
from labelscrub.confusion import confusion_beyond, confusion_epochs, count_epochs, read_confusion, stronger_reading
from labelscrub.mistakes import (
    combined_rates,
    count_mistakes,
    decoy_share,
    disagreement_evenness,
    estimate_mistakes,
)
from labelscrub.noise import (
    NoiseEstimate,
    best_depth,
    estimate_noise,
    evidence_epochs,
    label_depth,
    overall_rate,
    tail_thresholds,
)


def load(run: Path) -> tuple[dict, list]:
    dumps = run / "dumps"
    labels = dict(np.load(dumps / "labels.npz"))
    epochs = [np.load(path) for path in sorted(dumps.glob("epoch-*.npz"))]
    return labels, epochs


def window_arrays(epochs: list, window: range) -> dict:
    given = decoy = None
    log_probs = []
    for epoch in window:
        data = epochs[epoch]
        given = best_depth(given, label_depth(data["losses"], data["mean_class_loss"]))
        decoy = best_depth(decoy, label_depth(data["decoy_loss"], data["mean_class_loss"]))
        log_probs.append(np.log(np.maximum(data["probabilities"].astype(np.float32), 1e-30)))
    mean_log = np.mean(log_probs, axis=0)
    probs = np.mean([np.exp(lp) for lp in log_probs], axis=0)
    losses = np.mean([epochs[epoch]["losses"] for epoch in window], axis=0)
    return {"given": given, "decoy": decoy, "log_probs": mean_log, "probs": probs, "losses": losses}


def decoy_rule(arrays: dict, noisy: np.ndarray, decoys: np.ndarray, classes: int, epoch: int = 0) -> NoiseEstimate:
    return estimate_noise(arrays["given"], arrays["decoy"], noisy, decoys, np.ones(len(noisy), bool), classes,
                          epoch=epoch)


def mean_log_probs(epochs: list, window: range) -> np.ndarray:
    return np.mean([np.log(np.maximum(epochs[e]["probabilities"].astype(np.float32), 1e-30)) for e in window], 0)


def mistakes_rule(arrays: dict, noisy: np.ndarray, classes: int) -> float:
    estimate = estimate_mistakes(arrays["log_probs"], noisy, np.ones(len(noisy), bool), classes, epoch=0)
    return overall_rate(estimate.per_class, np.bincount(noisy, minlength=classes))


def clean_rule(epochs: list, noisy: np.ndarray, spread: NoiseEstimate, total_epochs: int,
               window: range | None = None) -> float:
    """`clean`'s final estimate from the warm-up's decoy estimate `spread`; NaN if the dumps end too early.
    `window`: the epochs of the count and the confusion estimate, if not clean's."""
    count_window = window or count_epochs(total_epochs, spread.epoch)
    confusion_window = window or confusion_epochs(total_epochs, spread.epoch)
    if not len(count_window) or count_window[-1] >= len(epochs):
        return float("nan")
    usable, classes = np.ones(len(noisy), bool), len(spread.per_class)
    late = mean_log_probs(epochs, count_window)
    rates = combined_rates(spread, count_mistakes(late, noisy, usable, classes, spread, epoch=count_window[-1]))
    reading = read_confusion(late, noisy, usable, classes, epoch=count_window[-1])
    if confusion_window != count_window:
        early = read_confusion(mean_log_probs(epochs, confusion_window), noisy, usable, classes,
                               epoch=confusion_window[-1])
        reading = stronger_reading(early, reading, noisy)
    confusion = confusion_beyond(reading, rates)
    return overall_rate(np.fmax(rates, confusion.share), np.bincount(noisy, minlength=len(rates)))


def confident_joint(probs: np.ndarray, noisy: np.ndarray, classes: int) -> float:
    thresholds = np.array([probs[noisy == label, label].mean() for label in range(classes)])
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -1.0)
    true_guess = masked.argmax(1)
    counted = above.any(1)
    joint = np.zeros((classes, classes))
    np.add.at(joint, (noisy[counted], true_guess[counted]), 1)
    # calibrate: each given-label row sums to that label's count
    sizes = np.bincount(noisy, minlength=classes)
    joint = joint / np.maximum(joint.sum(1, keepdims=True), 1) * sizes[:, None]
    return float((joint.sum() - np.trace(joint)) / joint.sum())


def switch_variants(epochs: list, noisy: np.ndarray, spread: NoiseEstimate, total: int,
                    switches: list[str]) -> dict:
    """`clean`'s final estimate with the evenness ends at each LOW-HIGH pair of `switches`, the evenness of the
    count's window and the share of the first count (at PLAUSIBILITY) the decoy estimate sees; empty if the dumps
    end before the count's window."""
    classes = len(spread.per_class)
    window = count_epochs(total, spread.epoch)
    if not len(window) or window[-1] >= len(epochs):
        return {}
    log_probs, usable = mean_log_probs(epochs, window), np.ones(len(noisy), bool)
    first = estimate_mistakes(log_probs, noisy, usable, classes, epoch=0)
    row = {"decoys see": decoy_share(spread, first, np.bincount(noisy, minlength=classes)),
           "evenness": disagreement_evenness(log_probs, noisy, usable, classes)}
    original = mistakes_module.PEOPLE_S_EVENNESS, mistakes_module.WRONG_AT_RANDOM_EVENNESS
    try:
        for switch in switches:
            low, high = (float(part) for part in switch.split("-"))
            mistakes_module.PEOPLE_S_EVENNESS, mistakes_module.WRONG_AT_RANDOM_EVENNESS = low, high
            row[switch] = clean_rule(epochs, noisy, spread, total)
    finally:
        mistakes_module.PEOPLE_S_EVENNESS, mistakes_module.WRONG_AT_RANDOM_EVENNESS = original
    return row


def _weighted_reference(exponent: float, top_weight, weigh_every_cell: bool = False, top_cells: bool = True):
    """A stand-in for mistakes._every_class_reference: weights p(c)^exponent, times the belief in each image's own
    label, p(own label) / p(likeliest), for every cell with `weigh_every_cell`, and times `top_weight(label,
    belief)` for the likeliest-class cells (kept only with `top_cells`)."""
    def reference(log_probs, labels, usable, likeliest, num_classes, _plausibility=None):  # weighs by `exponent`
        own = log_probs[np.arange(len(labels)), np.maximum(labels, 0)]
        for label in range(num_classes):
            others = usable & (labels != label)
            column = log_probs[others, label].astype(np.float64)
            depth = likeliest[others] - column
            weight = np.exp(exponent * column)
            belief = np.exp(own[others] - likeliest[others])
            if weigh_every_cell:
                weight *= belief
            top = depth <= 0
            weight[top] *= top_weight(label, belief[top])
            keep = np.isfinite(depth) & (top_cells | ~top)
            yield depth[keep], weight[keep]
    return reference


def count_variants(epochs: list, noisy: np.ndarray, spread: NoiseEstimate, total: int) -> dict:
    """`clean`'s final estimate under each reference variant of the module docstring."""
    original = mistakes_module._every_class_reference, mistakes_module.PLAUSIBILITY
    classes = len(spread.per_class)
    window = count_epochs(total, spread.epoch)
    mean = mean_log_probs(epochs, window)
    base = estimate_mistakes(mean, noisy, np.ones(len(noisy), bool), classes, epoch=0)
    missed = np.nan_to_num(np.clip(1 - spread.per_class / np.maximum(base.per_class, 1e-9), 0, 1) ** 2)
    variants = {
        "top 0.8": (0.8, _weighted_reference(0.8, lambda label, belief: 1.0)),
        "top 0.85": (0.85, _weighted_reference(0.85, lambda label, belief: 1.0)),
        "believed 0.85": (0.85, _weighted_reference(0.85, lambda label, belief: belief)),
        "own-label 1": (1.0, _weighted_reference(1.0, lambda label, belief: 1.0, weigh_every_cell=True,
                                                 top_cells=False)),
        "decoys-miss 0.85": (0.85, _weighted_reference(0.85, lambda label, belief: missed[label])),
    }
    row = {}
    try:
        for name, (exponent, reference) in variants.items():
            mistakes_module._every_class_reference, mistakes_module.PLAUSIBILITY = reference, exponent
            row[name] = clean_rule(epochs, noisy, spread, total)
    finally:
        mistakes_module._every_class_reference, mistakes_module.PLAUSIBILITY = original
    end = window[-1] - 4
    row[f"window {end}"] = clean_rule(epochs, noisy, spread, total, window=range(end - 2, end + 1))
    row["two-reference 0.85"] = two_reference_rate(mean, noisy, classes, 0.85)
    return row


def two_reference_rate(log_probs: np.ndarray, noisy: np.ndarray, classes: int, exponent: float) -> float:
    from scipy.optimize import nnls  # a benchmark dependency (pip install -e ".[bench]"), not the tests'

    likeliest = log_probs.max(1)
    depth_given = likeliest - log_probs[np.arange(len(noisy)), noisy]
    total = 0.0
    for label in range(classes):
        members = noisy == label
        depth = likeliest[~members] - log_probs[~members, label]
        counted = depth > 0
        depth, plausible = depth[counted], np.exp(exponent * log_probs[~members, label][counted].astype(np.float64))
        thresholds = tail_thresholds(depth, plausible)
        tails = np.array([[(depth > t).mean(), plausible[depth > t].sum() / plausible.sum()] for t in thresholds])
        coefficients, _ = nnls(tails, np.array([(depth_given[members] > t).mean() for t in thresholds]))
        total += coefficients.sum() * members.sum()
    return total / len(noisy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--windows", nargs="*", default=None, help="FIRST-LAST epochs (0-based); default: clean's")
    parser.add_argument("--epochs", type=int, default=None, help="the run's length (default: the dumps')")
    parser.add_argument("--count-variants", action="store_true", help="clean's estimate with other references")
    parser.add_argument("--switches", nargs="*", default=[], metavar="LOW-HIGH",
                        help="clean's estimate with the evenness ends (people's mistakes-random ones) at these")
    args = parser.parse_args()
    for run in args.runs:
        labels, epochs = load(run)
        true, noisy, decoys = labels["true"], labels["noisy"], labels["decoys"]
        classes = int(max(true.max(), noisy.max())) + 1
        total = args.epochs or len(epochs)
        default = evidence_epochs(max(1, int(0.2 * total)))
        windows = [range(int(w.split("-")[0]), int(w.split("-")[1]) + 1) for w in args.windows] if args.windows \
            else [default]
        spread = decoy_rule(window_arrays(epochs, default), noisy, decoys, classes, epoch=default[-1])
        print(f"{run.name}: planted {(true != noisy).mean():.3f}, {len(epochs)} epochs dumped; clean would "
              f"estimate {clean_rule(epochs, noisy, spread, total):.3f}")
        if args.count_variants:
            variants = count_variants(epochs, noisy, spread, total)
            print("  count variants: " + json.dumps({k: round(v, 3) for k, v in variants.items()}))
        if args.switches:
            variants = switch_variants(epochs, noisy, spread, total, args.switches)
            print("  switches: " + json.dumps({k: round(v, 3) for k, v in variants.items()}))
        for window in windows:
            if window[-1] >= len(epochs):
                continue
            arrays = window_arrays(epochs, window)
            last = epochs[window[-1]]["probabilities"].astype(np.float32)
            row = {
                "window": f"{window[0]}-{window[-1]}",
                "decoy": decoy_rule(arrays, noisy, decoys, classes).overall,
                "mistakes": mistakes_rule(arrays, noisy, classes),
                "confident-joint": confident_joint(arrays["probs"], noisy, classes),
                "disagree": float((arrays["probs"].argmax(1) != noisy).mean()),
                "agreement(last)": float((last.argmax(1) == noisy).mean()),
                "true-accuracy(last)": float((last.argmax(1) == true).mean()),
            }
            print("  " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
