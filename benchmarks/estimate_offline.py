"""Noise-rate estimators tried offline on the per-epoch dumps of `epoch_dumps.py`: which reads the truth best.

Each rule reads the measurements of a window of epochs (default: the ones `clean` reads, noise.evidence_epochs of
the run's warm-up) and returns the estimated share of wrong labels. Run by hand:

    python benchmarks/estimate_offline.py benchmarks/results/dumps/idn40-stepe-s0 --windows 3-5 6-8

Rules:
- decoy: labelscrub's estimate (noise.py), each label at its best depth over the window.
- decoy+confusion: the same plus the confusion estimate (confusion.py) over its window, as `clean` combines them.
- confident-joint: cleanlab's count (Northcutt et al. 2021) on the window's mean probabilities, in-sample.
- plausible-T: the decoy rule with decoys drawn per image in proportion to p(class)^T over its other classes (the
  window's mean probabilities): T = 0 is uniform like labelscrub's decoys, T = 1 a wrong label as likely as the
  network finds it, like an annotator's slip.
- flattest: the plausible-T whose tail ratios are flattest over the top thresholds (a reference that matches the
  wrong labels gives a constant ratio where right labels are gone).
- gmm: a two-component Gaussian mixture on the window's mean loss, the high-loss component's weight.
- disagree: the share of samples whose likeliest class (mean probability) is not the given label.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from labelscrub.confusion import confusion_epochs, estimate_confusion
from labelscrub.noise import best_depth, estimate_noise, evidence_epochs, label_depth, tail_ratio


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


def decoy_rule(arrays: dict, noisy: np.ndarray, decoys: np.ndarray, classes: int):
    return estimate_noise(arrays["given"], arrays["decoy"], noisy, decoys, np.ones(len(noisy), bool), classes,
                          epoch=0)


def confusion_rule(epochs: list, noisy: np.ndarray, spread: np.ndarray, total_epochs: int, after: int) -> float:
    window = confusion_epochs(total_epochs, after)
    if not len(window) or window[-1] >= len(epochs):
        return float("nan")
    mean = np.mean([np.log(np.maximum(epochs[e]["probabilities"].astype(np.float32), 1e-30)) for e in window], 0)
    estimate = estimate_confusion(mean, noisy, np.ones(len(noisy), bool), spread, epoch=window[-1])
    sizes = np.bincount(noisy, minlength=len(spread))
    rates = np.maximum(np.nan_to_num(spread), estimate.share)
    return float(np.dot(sizes, rates) / sizes.sum())


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


TEMPERATURES = (0.0, 0.5, 1.0, 2.0)


def plausible_decoys(probs: np.ndarray, noisy: np.ndarray, temperature: float, seed: int = 0) -> np.ndarray:
    weights = np.power(np.maximum(probs.astype(np.float64), 1e-12), temperature)
    weights[np.arange(len(noisy)), noisy] = 0.0
    weights /= weights.sum(1, keepdims=True)
    draws = np.random.default_rng(seed).random(len(noisy))[:, None]
    return np.minimum((weights.cumsum(1) < draws).sum(1), probs.shape[1] - 1)


def decoy_depths(epochs: list, window: range, decoys: np.ndarray) -> np.ndarray:
    depth = None
    rows = np.arange(len(decoys))
    for epoch in window:
        log_p = np.log(np.maximum(epochs[epoch]["probabilities"].astype(np.float32), 1e-30))
        depth = best_depth(depth, label_depth(-log_p[rows, decoys], -log_p.mean(1)))
    return depth


def plausible_rule(arrays: dict, noisy: np.ndarray, classes: int, epochs: list, window: range,
                   temperature: float) -> tuple[float, float]:
    """(estimate, flatness: mean over classes of the relative spread of the top tail ratios; lower = flatter)."""
    decoys = plausible_decoys(arrays["probs"], noisy, temperature)
    depth = decoy_depths(epochs, window, decoys)
    estimate = estimate_noise(arrays["given"], depth, noisy, decoys, np.ones(len(noisy), bool), classes, epoch=0)
    spreads = []
    for label in range(classes):
        wrong = depth[decoys == label]
        given = arrays["given"][noisy == label]
        if len(wrong) < 2 or not len(given):
            continue
        ratios = [tail_ratio(given, wrong, t) for t in np.percentile(wrong, np.arange(70, 96, 5))]
        spreads.append(np.std(ratios) / max(np.mean(ratios), 1e-9))
    return estimate.overall, float(np.mean(spreads))


def gmm_rule(losses: np.ndarray) -> float:
    """NaN without scikit-learn (it comes with the bench extra, through cleanlab)."""
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        return float("nan")

    values = np.log(np.maximum(losses, 1e-6))[:, None]
    model = GaussianMixture(2, random_state=0, reg_covar=1e-4).fit(values)
    high = int(np.argmax(model.means_[:, 0]))
    return float(model.predict_proba(values)[:, high].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--windows", nargs="*", default=None, help="FIRST-LAST epochs (0-based); default: clean's")
    parser.add_argument("--epochs", type=int, default=None, help="the run's length (default: the dumps')")
    args = parser.parse_args()
    for run in args.runs:
        labels, epochs = load(run)
        true, noisy, decoys = labels["true"], labels["noisy"], labels["decoys"]
        classes = int(max(true.max(), noisy.max())) + 1
        total = args.epochs or len(epochs)
        default = evidence_epochs(max(1, int(0.2 * total)))
        windows = [range(int(w.split("-")[0]), int(w.split("-")[1]) + 1) for w in args.windows] if args.windows \
            else [default]
        print(f"{run.name}: planted {(true != noisy).mean():.3f}, {len(epochs)} epochs dumped")
        for window in windows:
            if window[-1] >= len(epochs):
                continue
            arrays = window_arrays(epochs, window)
            decoy = decoy_rule(arrays, noisy, decoys, classes)
            last = epochs[window[-1]]["probabilities"].astype(np.float32)
            row = {
                "window": f"{window[0]}-{window[-1]}",
                "decoy": decoy.overall,
                "decoy+confusion": confusion_rule(epochs, noisy, decoy.per_class, total, window[-1]),
                "confident-joint": confident_joint(arrays["probs"], noisy, classes),
                "gmm": gmm_rule(arrays["losses"]),
            }
            flat = {}
            for temperature in TEMPERATURES:
                flat[temperature] = plausible_rule(arrays, noisy, classes, epochs, window, temperature)
                row[f"plausible-{temperature:g}"] = flat[temperature][0]
                row[f"flat-{temperature:g}"] = flat[temperature][1]
            row["flattest"] = min(flat.values(), key=lambda pair: pair[1])[0]
            row |= {
                "disagree": float((arrays["probs"].argmax(1) != noisy).mean()),
                "agreement(last)": float((last.argmax(1) == noisy).mean()),
                "true-accuracy(last)": float((last.argmax(1) == true).mean()),
            }
            print("  " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
