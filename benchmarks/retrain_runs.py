"""Retrain what finished benchmark runs kept, without cleaning again: plant the same noise (same --seed), read each
run's `dropped` column, retrain on the rest under the benchmark recipe and print the test accuracy. Run by hand,
never in CI (results in BENCHMARKS.md).

    python benchmarks/retrain_runs.py --noise sym10 benchmarks/results/grid-sym10/sym10/fixed-0.05 \
        benchmarks/results/grid-sym10/sym10/fixed-0.15
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from noise_benchmark import NOISE_SETTINGS, add_protocol_arguments, dropped_by_row, plant, retrain_kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of clean runs on the planted data")
    parser.add_argument("--noise", required=True, choices=sorted(NOISE_SETTINGS))
    add_protocol_arguments(parser)  # the recipe itself comes from each run
    parser.add_argument("--retrain-seed", type=int, default=None,
                        help="seed of the retraining only (default: the run's own): how much a retrain varies")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labelscrub-retrain-") as scratch:
        data, _, noisy = plant(args.noise, args, Path(scratch))
        for run in args.runs:
            config = json.loads((run / "run.json").read_text())["config"]
            if config["seed"] != args.seed:
                raise SystemExit(f"{run}: cleaned with seed {config['seed']}, not {args.seed}")
            report = pq.read_table(run / "report.parquet", columns=["sample_id", "dropped"])
            kept = ~dropped_by_row(report, len(noisy))
            recipe = {key: config[key] for key in ("epochs", "stem", "image_size", "device", "seed")}
            if args.retrain_seed is not None:
                recipe["seed"] = args.retrain_seed
            folder = "drop" if args.retrain_seed is None else f"drop-seed{args.retrain_seed}"
            accuracy = retrain_kept(data, kept, recipe, run / folder)
            print(json.dumps({"run": str(run), "noise": args.noise, "kept": int(kept.sum()),
                              "retrain_seed": recipe["seed"], "retrain_accuracy": accuracy}), flush=True)


if __name__ == "__main__":
    main()
