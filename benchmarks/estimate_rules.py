"""Which rule estimates the noise rate best: the warm-up of a Step-E run, measured once, read by several rules.

The estimate (labelscrub/noise.py) compares how wrong the given labels look with how wrong the decoy labels look.
This script trains the warm-up epochs exactly as `clean` does (nothing is dropped in them), keeps every epoch's
per-sample measurements, and estimates the noise rate from them under each rule: which statistic (the loss of a
label, or its depth: the loss minus the mean loss over all classes) and which epochs (a moving average as the
score uses, the last epoch, or each label at its best over a span of epochs). Run by hand, never in CI.

    python benchmarks/estimate_rules.py --noise sym0 sym10 sym20 sym40 asym40
    python benchmarks/estimate_rules.py --digits   # the sample data (20% planted), with the tests' recipe
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
from noise_benchmark import NOISE_SETTINGS, add_protocol_arguments, plant

from labelscrub.config import CleanConfig
from labelscrub.decoding import decode_to_device
from labelscrub.images import typical_side
from labelscrub.model import pick_device
from labelscrub.noise import best_depth, estimate_noise, evidence_epochs, label_depth
from labelscrub.ranking import moving_average
from labelscrub.sources import open_data
from labelscrub.train import make_setup, train_epoch

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def main() -> None:
    args = _arguments()
    columns = ["digits"] if args.digits else args.noise
    estimates = {}
    for setting in columns:
        with tempfile.TemporaryDirectory(prefix="labelscrub-rules-") as scratch:
            estimates[setting] = estimates_for(setting, args, Path(scratch))
        print(setting, {rule: f"{value:.1%}" for rule, value in estimates[setting].items()}, flush=True)
    print("\n| rule | " + " | ".join(columns) + " |")
    print("| --- | " + " | ".join("---" for _ in columns) + " |")
    for rule in RULES:
        print(f"| {rule} | " + " | ".join(f"{estimates[setting][rule]:.1%}" for setting in columns) + " |")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", nargs="+", default=["sym10"], choices=sorted(NOISE_SETTINGS))
    parser.add_argument("--digits", action="store_true", help="the digits sample instead of CIFAR-10")
    add_protocol_arguments(parser)  # --epochs is the run's length, which sets the warm-up (20%)
    return parser.parse_args()


def estimates_for(setting: str, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    """Train the warm-up once and return {rule: estimated noise rate}; the truth is under "planted"."""
    if setting == "digits":
        images = open_data(SAMPLE_DATA / "digits").train
        truth = _digits_truth(images.sample_ids, images.labels)
        config = CleanConfig(epochs=15, lr=0.02, seed=args.seed)
    else:
        data, truth, _ = plant(setting, args, scratch)
        images = open_data(data).train
        config = CleanConfig(epochs=args.epochs, stem=args.stem, image_size=args.image_size, seed=args.seed)
    config = config.resolve(typical_side(images))
    device = pick_device(args.device)
    pixels, labels, _ = decode_to_device(images, config, scratch / "cache", "train.npy", device)
    everything = labels >= 0
    setup = make_setup(pixels, labels, everything, len(images.class_names), config, device)
    epochs = []
    # Nothing is dropped in the warm-up, nor after a warm-up shorter than the evidence epochs until the estimate
    # is made (noise.MIN_EPOCHS_BEFORE_ESTIMATE): every sample trains.
    for epoch in range(max(config.warmup, evidence_epochs(config.warmup)[-1] + 1)):
        measured = train_epoch(setup, everything, epoch, schedule_epochs=config.epochs, record=everything).measured
        epochs.append(measured)
    decoys = setup.decoys.cpu().numpy()
    results = {"planted": float((labels != truth)[everything].mean())}
    for rule, read in RULES.items():
        if read is not None:
            given, decoy = read(epochs, config)
            results[rule] = estimate_noise(given, decoy, labels, decoys, everything, len(images.class_names),
                                           epoch=len(epochs) - 1).overall
    return results


def _digits_truth(sample_ids: list[str], labels: np.ndarray) -> np.ndarray:
    """The true label of every digits sample: its given label unless sample_data/digits_flipped.csv says otherwise."""
    with (SAMPLE_DATA / "digits_flipped.csv").open() as handle:
        flipped = {row["folder_sample_id"]: int(row["true_label"]) for row in csv.DictReader(handle)}
    return np.array([flipped.get(sample, label) for sample, label in zip(sample_ids, labels)])


def _given_and_decoy(measured, statistic: str) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's measurements of the given and the decoy labels: their losses, or their depths."""
    if statistic == "loss":
        return measured.losses, measured.decoy_loss
    return (label_depth(measured.losses, measured.mean_class_loss),
            label_depth(measured.decoy_loss, measured.mean_class_loss))


def _averaged(statistic: str):
    """The moving average over the warm-up, with the score's smoothing."""
    def read(epochs, config: CleanConfig):
        given = decoy = None
        for measured in epochs:
            now_given, now_decoy = _given_and_decoy(measured, statistic)
            given = moving_average(given, now_given, config.smoothing)
            decoy = moving_average(decoy, now_decoy, config.smoothing)
        return given, decoy
    return read


def _best(statistic: str, which: str):
    """Each label at its best over some warm-up epochs: "evidence" (labelscrub's: the last 3 but the first),
    "last" (the last only), "all but the first", "all"."""
    def read(epochs, config: CleanConfig):
        chosen = {"evidence": list(evidence_epochs(config.warmup)), "last": [len(epochs) - 1],
                  "all but the first": list(range(min(1, len(epochs) - 1), len(epochs))),
                  "all": list(range(len(epochs)))}[which]
        given = decoy = None
        for epoch in chosen:
            now_given, now_decoy = _given_and_decoy(epochs[epoch], statistic)
            given, decoy = best_depth(given, now_given), best_depth(decoy, now_decoy)
        return given, decoy
    return read


RULES = {
    "planted": None,
    "loss, moving average (the first rule)": _averaged("loss"),
    "depth, moving average": _averaged("depth"),
    "loss, best of the last 3 warm-up epochs but the first": _best("loss", "evidence"),
    "depth, last warm-up epoch": _best("depth", "last"),
    "depth, best of the last 3 warm-up epochs but the first (labelscrub's)": _best("depth", "evidence"),
    "depth, best of every warm-up epoch but the first": _best("depth", "all but the first"),
    "depth, best of every warm-up epoch": _best("depth", "all"),
}

if __name__ == "__main__":
    main()
