"""Retrain what finished benchmark runs kept, without cleaning again: plant the same noise (same --seed), read each
run's report, build the manifest, retrain under the benchmark recipe and print the test accuracy. Run by hand,
never in CI (results in BENCHMARKS.md).

    python benchmarks/retrain_runs.py --noise sym10 benchmarks/results/grid-sym10/sym10/fixed-0.05 \\
        benchmarks/results/grid-sym10/sym10/fixed-0.15
    # which manifest trains the best model, at equal epochs and at equal SGD steps
    python benchmarks/retrain_runs.py --noise sym40 RUN --manifest drop relabel drop+relabel --equal-steps

Manifests (--manifest), from the report's `dropped` and `suggested_label` columns:
- drop: the kept samples, under their given labels (what `labelscrub clean` writes).
- drop+relabel: also the dropped samples with a confident suggested label, under that label (`clean --relabel`).
- relabel: every sample, each with a confident suggestion under that label; nothing dropped.
With --equal-steps the epochs are scaled by all samples / manifest samples, as `retrain --equal-steps` does.
With --relabel-confidence C a suggestion counts only at a confidence of C or more (the run's own floor is
`suggest_confidence`, 0.8 by default): which relabels pay.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from noise_benchmark import NOISE_SETTINGS, add_protocol_arguments, plant, report_rows, retrain_kept

from labelscrub.apply import sure_suggestions

MANIFESTS = ("drop", "drop+relabel", "relabel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of clean runs on the planted data")
    parser.add_argument("--noise", required=True, choices=sorted(NOISE_SETTINGS))
    add_protocol_arguments(parser)  # the recipe itself comes from each run
    parser.add_argument("--manifest", nargs="+", default=["drop"], choices=MANIFESTS)
    parser.add_argument("--equal-steps", action="store_true",
                        help="train each manifest for as many SGD steps as all samples get in the run's epochs")
    parser.add_argument("--relabel-confidence", type=float, default=None,
                        help="relabel only with suggestions at least this confident (default: every suggestion)")
    parser.add_argument("--retrain-seed", type=int, default=None,
                        help="seed of the retraining only (default: the run's own): how much a retrain varies")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labelscrub-retrain-") as scratch:
        data, true_labels, noisy = plant(args.noise, args, Path(scratch))
        for run in args.runs:
            config = json.loads((run / "run.json").read_text())["config"]
            if config["seed"] != args.seed:
                raise SystemExit(f"{run}: cleaned with seed {config['seed']}, not {args.seed}")
            dropped, suggested = read_outcome(run, len(noisy), args.relabel_confidence)
            for name in args.manifest:
                kept, labels = build_manifest(name, noisy, dropped, suggested)
                recipe = {key: config[key] for key in ("epochs", "stem", "image_size", "device", "seed", "precision")
                          if key in config}  # runs older than --precision lack it
                if args.retrain_seed is not None:
                    recipe["seed"] = args.retrain_seed
                if args.equal_steps:
                    recipe["epochs"] = max(recipe["epochs"], round(recipe["epochs"] * len(noisy) / kept.sum()))
                folder = name.replace("+", "-") + ("-equal-steps" if args.equal_steps else "") + \
                    ("" if args.retrain_seed is None else f"-seed{args.retrain_seed}") + \
                    ("" if args.relabel_confidence is None or name == "drop" else f"-conf{args.relabel_confidence}")
                accuracy = retrain_kept(data, kept, recipe, run / folder, labels)
                right = labels[kept] == true_labels[kept]
                print(json.dumps({"run": str(run), "noise": args.noise, "manifest": name,
                                  "equal_steps": args.equal_steps, "relabel_confidence": args.relabel_confidence,
                                  "epochs": recipe["epochs"],
                                  "samples": int(kept.sum()), "right_labels": float(right.mean()),
                                  "retrain_seed": recipe["seed"], "retrain_accuracy": accuracy}), flush=True)


def read_outcome(run: Path, count: int, min_confidence: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(dropped, suggested label or -1) per row of data/train.parquet, from the run's report; suggestions below
    `min_confidence` read -1."""
    report = pq.read_table(run / "report.parquet",
                           columns=["sample_id", "dropped", "suggested_label", "suggestion_confidence"])
    rows = report_rows(report)
    dropped = np.zeros(count, bool)
    dropped[rows] = report.column("dropped").to_numpy(zero_copy_only=False)
    suggestion = report.column("suggested_label").fill_null(-1).to_numpy()
    if min_confidence is not None:  # the floor as `clean --relabel-confidence` applies it
        suggestion = sure_suggestions(suggestion, report.column("suggestion_confidence").fill_null(math.nan).to_numpy(),
                                      min_confidence)
    suggested = np.full(count, -1, np.int64)
    suggested[rows] = suggestion
    return dropped, suggested


def build_manifest(name: str, noisy: np.ndarray, dropped: np.ndarray,
                   suggested: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kept, labels) of one --manifest choice."""
    confident = suggested >= 0
    if name == "drop":
        return ~dropped, noisy
    if name == "drop+relabel":
        return ~dropped | confident, np.where(dropped & confident, suggested, noisy)
    return np.ones(len(noisy), bool), np.where(confident, suggested, noisy)


if __name__ == "__main__":
    main()
