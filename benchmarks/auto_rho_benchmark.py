"""`--rho-max auto` against the truth: plant label noise, clean with auto, and compare the estimated noise rate,
overall and per class, with the planted one. Run by hand, never in CI (results in BENCHMARKS.md).

    python benchmarks/auto_rho_benchmark.py --noise sym0 sym20 sym40 asym40 \
        --train-per-class 1000 --test-per-class 200 --epochs 30 --stem imagenet --image-size 32

Per setting it prints the planted and estimated rates, the worst per-class error, the share dropped and the
detection precision / recall / F1. `--fixed` also cleans with rho_max set to the planted rate (the best guess a
user could make, knowing the truth) for comparison, `--fixed 0.05 0.1 0.15` with each of those values (a grid
for the best fixed rho_max). `--retrain` retrains what each run keeps; with auto it also
measures `--relabel`: how many of the relabelled samples got their true label back, and the retrain accuracy on
the relabelled manifest against the one that only drops.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from noise_benchmark import (
    NOISE_SETTINGS,
    add_protocol_arguments,
    dropped_by_row,
    plant,
    protocol_recipe,
    report_rows,
    retrain_kept,
    run_settings,
    score_by_row,
)

import labelscrub
from labelscrub.planted import auroc, detection_scores


def main() -> None:
    run_settings(_arguments(), run_setting, markdown_table, prefix="auto-")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", nargs="+", default=["sym40"], choices=sorted(NOISE_SETTINGS))
    parser.add_argument("--fixed", nargs="*", type=float, default=None, metavar="RHO",
                        help="also clean with these fixed rho_max values (none given: the planted rate)")
    parser.add_argument("--no-auto", dest="auto", action="store_false", help="skip the auto run (with --fixed)")
    parser.add_argument("--retrain", action="store_true", help="retrain each kept set (and the relabelled one)")
    parser.add_argument("--select", default="global", choices=["global", "per-class"])
    parser.add_argument("--suggest-confidence", type=float, default=None,
                        help="clean's --suggest-confidence; the relabel accuracy is also broken down by confidence "
                        "above it (default: labelscrub's)")
    add_protocol_arguments(parser)
    parser.add_argument("--out", default=None)
    return parser.parse_args()


def run_setting(setting: str, args: argparse.Namespace, scratch: Path, out: Path) -> list[dict]:
    data, true_labels, noisy = plant(setting, args, scratch)
    flipped = noisy != true_labels
    recipe = protocol_recipe(args)
    truth_per_class = np.array([flipped[noisy == label].mean() for label in range(int(noisy.max()) + 1)])
    print(f"== {setting}: {len(noisy)} train, {int(flipped.sum())} flipped ({flipped.mean():.3f})", flush=True)

    variants = [("auto", {"rho_max": "auto", "relabel": True})] if args.auto else []
    if args.fixed is not None:
        for rho_max in args.fixed or [float(flipped.mean())]:
            variants.append((f"fixed {rho_max:g}", {"rho_max": rho_max}))
    rows = []
    for name, options in variants:
        started = time.perf_counter()
        if args.suggest_confidence is not None:
            options["suggest_confidence"] = args.suggest_confidence
        run_out = out / name.replace(" ", "-")
        result = labelscrub.clean(data, run_out, overwrite=True, select=args.select, **recipe, **options)
        seconds = time.perf_counter() - started
        report = result.report()
        dropped = dropped_by_row(report, len(noisy))
        noise = result.summary["noise"]
        estimated = np.array([entry["estimated_noise_rate"] for entry in noise["classes"].values()], float)
        row = {"noise": setting, "variant": name, "select": args.select, "planted_rate": float(flipped.mean()),
               "estimated_rate": noise["estimated_noise_rate"],
               "worst_class_error": float(np.nanmax(np.abs(estimated - truth_per_class))),
               "rho_max_used": noise["rho_max_used"], "dropped_share": float(dropped.mean()),
               **detection_scores(dropped, flipped), "auroc": auroc(score_by_row(report, len(noisy)), flipped),
               "seconds": seconds}
        if name == "auto":
            row.update(relabel_quality(report, report_rows(report), true_labels, noisy))
        if args.retrain:
            row["retrain_accuracy"] = retrain_kept(data, ~dropped, recipe, run_out / "drop")
            if name == "auto":
                row["retrain_accuracy_relabel"] = labelscrub.retrain(
                    result.manifest_path, test=data / "test.parquet", out=run_out / "relabel",
                    overwrite=True, **recipe).accuracy
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def relabel_quality(report, row_of: np.ndarray, true_labels: np.ndarray, noisy: np.ndarray) -> dict:
    """Among dropped samples with a suggestion other than their given label: how many, and how many of those
    suggestions are the true label."""
    suggested = np.full(len(noisy), -1)
    values = report.column("suggested_label").to_numpy(zero_copy_only=False)
    suggested[row_of] = np.where(np.isnan(values.astype(float)), -1, values)
    dropped = np.zeros(len(noisy), bool)
    dropped[row_of] = report.column("dropped").to_numpy(zero_copy_only=False)
    confidence = np.full(len(noisy), np.nan)
    confidence[row_of] = report.column("suggestion_confidence").to_numpy(zero_copy_only=False)
    relabelled = dropped & (suggested >= 0) & (suggested != noisy)
    correct = int((suggested[relabelled] == true_labels[relabelled]).sum())
    by_confidence = {}
    for floor in (0.5, 0.6, 0.7, 0.8, 0.9):  # what a higher --suggest-confidence would have relabelled
        chosen = relabelled & (confidence >= floor)
        by_confidence[f"{floor:.1f}"] = {"relabelled": int(chosen.sum()),
                                         "correct": int((suggested[chosen] == true_labels[chosen]).sum())}
    return {"relabelled": int(relabelled.sum()), "relabelled_correct": correct,
            "relabel_accuracy": correct / relabelled.sum() if relabelled.any() else None,
            "was_right_before": int((noisy[relabelled] == true_labels[relabelled]).sum()),
            "relabel_by_confidence": by_confidence}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| noise | rho_max | planted | estimated | worst class off by | dropped | precision | recall | F1 | "
             "retrain acc (drop) | relabelled (correct) | retrain acc (relabel) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def percent(value):
        return "" if value is None else f"{value:.1%}"

    for row in rows:
        relabel = "" if "relabelled" not in row else f"{row['relabelled']} ({row['relabelled_correct']})"
        lines.append(
            f"| {row['noise']} | {row['variant']} | {row['planted_rate']:.1%} | {percent(row['estimated_rate'])} | "
            f"{row['worst_class_error']:.1%} | {row['dropped_share']:.1%} | {row['precision']:.3f} | "
            f"{row['recall']:.3f} | {row['f1']:.3f} | {percent(row.get('retrain_accuracy'))} | {relabel} | "
            f"{percent(row.get('retrain_accuracy_relabel'))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
