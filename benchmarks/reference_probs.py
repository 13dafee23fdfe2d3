"""Out-of-fold class probabilities: what a network trained on other images thinks of each image.

Two users:
- instance-dependent noise (`labelscrub.planted.instance_dependent_noise`) needs a reference network trained on
  the *clean* labels, each image scored by a network that never saw it, so its probabilities say how ambiguous
  the image is rather than that it was memorised. `--reference-source folds` (the default): 2 folds of the
  protocol's own images. `--reference-source outside`: one network trained on the dataset's other training
  images (`--reference-per-class` of each class), which are not in the protocol's subset; with more images it is
  the stronger annotator, whose mistakes are on images that are ambiguous, not on ones a small network gets wrong.
  They are cached per protocol, source and reference seed in benchmarks/cache/, since every noise setting and
  method of a protocol reuses them.
- cleanlab needs out-of-sample probabilities on the *noisy* labels (5 folds, noise_benchmark.run_cleanlab).

Run by hand to fill the cache and see the noise it plants (the true class x given label matrix):

    python benchmarks/reference_probs.py --noise idn40 --seed 0
    # or both folds side by side first, one process each:
    python benchmarks/reference_probs.py --fold 0 & python benchmarks/reference_probs.py --fold 1
    # the stronger annotator: one network on the 40,000 CIFAR-10 training images outside the protocol's subset
    python benchmarks/reference_probs.py --noise idn40 --reference-source outside
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from labelscrub.config import CleanConfig
from labelscrub.decoding import decode_to_device
from labelscrub.model import pick_device
from labelscrub.sources import open_data
from labelscrub.train import make_setup, probe, train_epoch

# LABELSCRUB_BENCH_CACHE moves it (the smoke test keeps its tiny references out of the real cache).
CACHE = Path(os.environ.get("LABELSCRUB_BENCH_CACHE", Path(__file__).resolve().parent / "cache"))
REFERENCE_FOLDS = 2


def out_of_fold_probabilities(data: Path, labels: np.ndarray, folds: int, recipe: dict, scratch: Path,
                              only: list[int] | None = None) -> np.ndarray:
    """(N, classes) softmax of each sample of data/train.parquet (file order), from a network trained for the
    recipe's epochs on the other folds with `labels`; fold membership is drawn with the recipe's seed. With
    `only`, just those folds are computed (the other rows stay 0), so folds can run side by side."""
    fold_of = np.random.default_rng(recipe.get("seed", 0)).permutation(len(labels)) % folds
    probabilities = None
    for fold in range(folds) if only is None else only:
        scored = probabilities_of_unseen(data, labels, fold_of != fold, recipe, scratch)
        probabilities = scored if probabilities is None else probabilities + scored
        held = fold_of == fold
        print(f"fold {fold + 1}/{folds}: out-of-fold accuracy "
              f"{(probabilities[held].argmax(1) == labels[held]).mean():.1%}", flush=True)
    assert probabilities is not None, "no fold to compute"
    return probabilities


def probabilities_of_unseen(data: Path, labels: np.ndarray, train_mask: np.ndarray, recipe: dict,
                            scratch: Path) -> np.ndarray:
    """(N, classes) softmax of the rows of data/train.parquet outside `train_mask` (0 on the rows in it), from a
    network trained for the recipe's epochs on the rows in it, with `labels`."""
    images = open_data(data).train
    config = CleanConfig(method="erm", **recipe).resolve(typical_side=recipe.get("image_size") or 32)
    device = pick_device(config.device)
    pixels, _, _ = decode_to_device(images, config, scratch, "unseen.npy", device)
    setup = make_setup(pixels, labels, train_mask, len(images.class_names), config, device)
    for epoch in range(config.epochs):
        train_epoch(setup, train_mask, epoch, schedule_epochs=config.epochs)
    probabilities = np.zeros((len(labels), len(images.class_names)), np.float32)
    unseen = np.flatnonzero(~train_mask)
    probabilities[unseen] = probe(setup, pixels, labels, unseen, keep_probabilities=True).probabilities[unseen]
    return probabilities



def cached_reference(clean_data: Path, true_labels: np.ndarray, recipe: dict, protocol: dict,
                     fold: int | None = None, outside: int = 0) -> np.ndarray | None:
    """The clean-label reference probabilities of clean_data/train.parquet, computed once per protocol and seed.
    Each fold is cached on its own as it is done; `fold` computes only that one (None once others are missing).
    With `outside`, the first `outside` rows are other images: one network trains on them and scores the rest,
    whose probabilities are returned (no folds)."""
    source = {"outside": outside} if outside else {"folds": REFERENCE_FOLDS}
    key = json.dumps({**protocol, **recipe, **source,
                      "labels": hashlib.sha256(np.asarray(true_labels, np.int64).tobytes()).hexdigest()},
                     sort_keys=True)
    path = CACHE / f"reference-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(key + "\n")
    if outside:
        print(f"reference probabilities: training on {outside} other images with their clean labels "
              f"({path.name})", flush=True)
        with tempfile.TemporaryDirectory(prefix="labelscrub-reference-") as scratch:
            scored = probabilities_of_unseen(clean_data, true_labels, np.arange(len(true_labels)) < outside,
                                             recipe, Path(scratch))[outside:]
        print(f"reference accuracy on the protocol's images: "
              f"{(scored.argmax(1) == true_labels[outside:]).mean():.1%}", flush=True)
        _save(path, scored)
        return scored
    parts = []
    for index in range(REFERENCE_FOLDS):
        part = path.with_suffix(f".fold{index}.npy")
        if not part.exists() and fold in (None, index):
            print(f"reference probabilities: training fold {index + 1}/{REFERENCE_FOLDS} on the clean labels "
                  f"({part.name})", flush=True)
            with tempfile.TemporaryDirectory(prefix="labelscrub-reference-") as scratch:
                _save(part, out_of_fold_probabilities(clean_data, true_labels, REFERENCE_FOLDS, recipe,
                                                      Path(scratch), only=[index]))
        parts.append(np.load(part) if part.exists() else None)
    if any(part is None for part in parts):
        return None
    _save(path, np.sum(parts, axis=0))  # each fold's rows are zero in the others
    return np.load(path)


def _save(path: Path, array: np.ndarray) -> None:
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, array)
    temporary.replace(path)


def main() -> None:
    from noise_benchmark import NOISE_SETTINGS, add_protocol_arguments, plant, reference_for, training_rows

    from labelscrub.planted import noise_matrix

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", default="idn40", choices=sorted(NOISE_SETTINGS))
    parser.add_argument("--fold", type=int, default=None,
                        help="compute only this reference fold (run the folds side by side, then once without)")
    add_protocol_arguments(parser)
    args = parser.parse_args()
    if args.fold is not None:
        with tempfile.TemporaryDirectory(prefix="labelscrub-reference-") as scratch:
            reference_for(args, Path(scratch), *training_rows(args), fold=args.fold)
        return
    with tempfile.TemporaryDirectory(prefix="labelscrub-reference-") as scratch:
        _, true_labels, noisy = plant(args.noise, args, Path(scratch))
    classes = int(true_labels.max()) + 1
    matrix = noise_matrix(true_labels, noisy, classes)
    print(f"{args.noise}, seed {args.seed}: {int((noisy != true_labels).sum())} of {len(noisy)} labels wrong "
          f"({(noisy != true_labels).mean():.1%}); rows = true class, columns = given label")
    print("| true \\ given | " + " | ".join(str(label) for label in range(classes)) + " | wrong |")
    print("| --- " * (classes + 2) + "|")
    for label, row in enumerate(matrix):
        print(f"| {label} | " + " | ".join(str(count) for count in row)
              + f" | {1 - row[label] / max(1, row.sum()):.0%} |")


if __name__ == "__main__":
    main()
