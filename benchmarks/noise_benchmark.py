"""Plant label noise in a labelled Parquet dataset, clean it with every method and with cleanlab, retrain on each
cleaned set, and print one table. Run by hand, never in CI (see BENCHMARKS.md for the protocols and results).

    # the CPU protocol, where plain training never memorises the wrong labels
    python benchmarks/noise_benchmark.py --noise sym40 --train-per-class 1000 --test-per-class 200 --epochs 30
    # the same cost, where it does (see BENCHMARKS.md, "After the short-batch fix")
    python benchmarks/noise_benchmark.py --noise sym40 --train-per-class 500 --test-per-class 200 --epochs 60

Per method and noise setting: precision, recall and F1 of the final dropped set against the planted flips, AUROC
of the report's `score`, retrain test accuracy, cleaning wall time, and that time relative to `erm` in the same
run. cleanlab (pip install -e ".[bench]") gets out-of-sample probabilities from 5-fold cross-validation with the
same network, recipe and epochs, then `cleanlab.filter.find_label_issues`; its kept set is retrained the same way.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from reference_probs import cached_reference, out_of_fold_probabilities

import labelscrub
from labelscrub.config import METHOD_NAMES, PRECISIONS, CleanConfig
from labelscrub.planted import CIFAR10_ASYMMETRIC, auroc, detection_scores, inject_noise, instance_dependent_noise

NOISE_SETTINGS = {"sym0": ("symmetric", 0.0), "sym10": ("symmetric", 0.1), "sym20": ("symmetric", 0.2),
                  "sym40": ("symmetric", 0.4), "asym40": ("asymmetric", 0.4),
                  # instance-dependent: hard images get the wrong class they look most like (reference_probs.py)
                  "idn20": ("instance", 0.2), "idn40": ("instance", 0.4),
                  # human: CIFAR-10N's annotators (--human-labels), protocol "CIFAR-10N dev" (see BENCHMARKS.md)
                  "c10n-worst": ("human", "worst"), "c10n-aggre": ("human", "aggre"),
                  "c10n-random1": ("human", "random1"), "c10n-random2": ("human", "random2"),
                  "c10n-random3": ("human", "random3")}
CV_FOLDS = 5


def main() -> None:
    args = _arguments()
    run_settings(args, run_setting, markdown_table, prefix="")


def run_settings(args: argparse.Namespace, run_setting, markdown_table, *, prefix: str) -> None:
    """Run every --noise setting in a scratch folder, keep results.json up to date, print and save the table."""
    out_root = Path(args.out or f"benchmarks/results/{prefix}{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    out_root.mkdir(parents=True, exist_ok=True)
    results = []
    for setting in args.noise:
        with tempfile.TemporaryDirectory(prefix="labelscrub-bench-") as scratch:
            results += run_setting(setting, args, Path(scratch), out_root / setting)
            (out_root / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(results)
    (out_root / "results.md").write_text(table + "\n")
    print(table)
    print(f"\nresults: {out_root}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", nargs="+", default=["sym40"], choices=sorted(NOISE_SETTINGS))
    parser.add_argument("--methods", nargs="*", default=list(METHOD_NAMES), type=method_spec,
                        help="method names, or variants as METHOD:option=value,option=value "
                        "(e.g. stepe:select=per-class,loss_pass=probe)")
    parser.add_argument("--no-cleanlab", dest="cleanlab", action="store_false")
    parser.add_argument("--oracle", action="store_true",
                        help="also retrain on exactly the unflipped samples: the best any dropping can do")
    parser.add_argument("--rho-max", type=float, default=None, help="default: the planted noise rate")
    parser.add_argument("--warmup", type=int, default=None, help="Step-E warm-up epochs (default: labelscrub's)")
    parser.add_argument("--ramp", type=int, default=None, help="Step-E ramp epochs (default: labelscrub's)")
    add_protocol_arguments(parser)
    parser.add_argument("--out", default=None)
    return parser.parse_args()


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The data, size, recipe and seed options every benchmark shares; the defaults are the CPU protocol."""
    parser.add_argument("--data", default="../shared/datasets/cifar10", help="folder with train.parquet, test.parquet")
    parser.add_argument("--train-per-class", type=int, default=1000, help="0 = all")
    parser.add_argument("--smallest-class", type=int, default=None,
                        help="imbalanced training set: class sizes fall geometrically from --train-per-class to this")
    parser.add_argument("--test-per-class", type=int, default=200, help="0 = all")
    parser.add_argument("--human-labels", default="../shared/datasets/cifar10n-dev/labels.parquet",
                        help="c10n-* settings: CIFAR-10N's labels (columns row, worst, aggre, random1..3)")
    parser.add_argument("--human-rows", type=int, default=10_000,
                        help="c10n-* settings: how many of the rows the labels cover, the first in order")
    parser.add_argument("--human-skip", type=int, default=0,
                        help="c10n-* settings: covered rows to pass over first; 10000 takes the next slice (rows "
                        "35,000 to 44,999 of the development half), one no constant was chosen on")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="default: labelscrub's (128)")
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="default: labelscrub's (auto, which is bf16 on CPUs with AMX): fp32 keeps one protocol's "
                        "runs comparable across machines")
    parser.add_argument("--seed", type=int, default=0, help="the noise draw and the runs")
    parser.add_argument("--reference-seed", type=int, default=0,
                        help="instance-dependent noise: the seed of the reference network (reference_probs.py), "
                        "the annotator the noise imitates; kept fixed while --seed varies the draw")
    parser.add_argument("--reference-source", choices=["folds", "outside"], default="folds",
                        help="instance-dependent noise: a reference trained on 2 folds of the protocol's images, "
                        "or on the dataset's other training images (a stronger annotator)")
    parser.add_argument("--reference-per-class", type=int, default=0,
                        help="--reference-source outside: other images per class to train on (0 = all)")


def method_spec(text: str) -> str:
    """Check a --methods entry: a method name, optionally followed by :option=value pairs of CleanConfig."""
    parse_method_spec(text)
    return text


def parse_method_spec(text: str) -> tuple[str, dict]:
    """"stepe:select=per-class,smoothing=0.5" -> ("stepe", {"select": "per-class", "smoothing": 0.5})."""
    method, _, rest = text.partition(":")
    if method not in METHOD_NAMES:
        raise argparse.ArgumentTypeError(f"unknown method {method!r} in {text!r}")
    options = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        if key not in CleanConfig.__dataclass_fields__:
            raise argparse.ArgumentTypeError(f"unknown option {key!r} in {text!r}")
        try:
            options[key] = json.loads(value)  # numbers and true/false
        except json.JSONDecodeError:
            options[key] = value  # words such as per-class
    return method, options


def first_per_class(labels: np.ndarray, per_class: int, smallest: int | None = None) -> np.ndarray:
    """Row numbers of the first `per_class` samples of every class, in file order (all rows when 0). With
    `smallest`, class sizes fall geometrically from `per_class` (the first class) to `smallest` (the last): an
    imbalanced set."""
    classes = np.unique(labels)
    if per_class <= 0:
        return np.arange(len(labels))
    sizes = [per_class] * len(classes) if smallest is None else \
        np.rint(np.geomspace(per_class, smallest, len(classes))).astype(int).tolist()
    chosen = [np.flatnonzero(labels == label)[:size] for label, size in zip(classes, sizes)]
    return np.sort(np.concatenate(chosen))


def write_subset(source: Path, rows: np.ndarray, labels: np.ndarray, target: Path) -> None:
    """The chosen rows of `source`, labels replaced, schema metadata (ClassLabel names) kept."""
    table = pq.read_table(source).take(pa.array(rows))
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.int64()))
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(pq.read_schema(source).metadata), target)


def plant(setting: str, args: argparse.Namespace, scratch: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Write the noisy training subset and the clean test subset into scratch/data; return (that folder, the true
    labels, the noisy labels) of the training rows, in file order."""
    kind, rate = NOISE_SETTINGS[setting]
    source = Path(args.data)
    train_rows, true_labels = human_rows(args) if kind == "human" else training_rows(args)
    test_labels_all = pq.read_table(source / "test.parquet", columns=["label"]).column("label").to_numpy()
    test_rows = first_per_class(test_labels_all, args.test_per_class)
    metadata = json.loads(pq.read_schema(source / "train.parquet").metadata[b"huggingface"])
    names = metadata["info"]["features"]["label"]["names"]
    data = scratch / "data"
    if kind == "human":
        noisy = human_labels(args, train_rows, column=rate)
    elif kind == "instance":
        reference = reference_for(args, scratch, train_rows, true_labels)
        noisy = instance_dependent_noise(true_labels, reference, rate=rate, seed=args.seed)
    else:
        mapping = ({names.index(a): names.index(b) for a, b in CIFAR10_ASYMMETRIC.items()}
                   if kind == "asymmetric" else None)
        noisy = inject_noise(true_labels, kind=kind, rate=rate, num_classes=len(names), seed=args.seed,
                             mapping=mapping)
    write_subset(source / "train.parquet", train_rows, noisy, data / "train.parquet")
    write_subset(source / "test.parquet", test_rows, test_labels_all[test_rows], data / "test.parquet")
    return data, true_labels, noisy


def training_rows(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(row numbers, true labels) of the protocol's training subset of data/train.parquet."""
    labels = pq.read_table(Path(args.data) / "train.parquet", columns=["label"]).column("label").to_numpy()
    rows = first_per_class(labels, args.train_per_class, args.smallest_class)
    return rows, labels[rows]


def human_rows(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(row numbers, true labels) of the CIFAR-10N protocol: --human-rows of the rows that --human-labels covers, in
    order, after the first --human-skip (rows 25,000 to 34,999 of CIFAR-10's training split for the development
    half, by default)."""
    covered = pq.read_table(args.human_labels, columns=["row"]).column("row").to_numpy()
    rows = np.sort(covered)[args.human_skip: args.human_skip + args.human_rows]
    labels = pq.read_table(Path(args.data) / "train.parquet", columns=["label"]).column("label").to_numpy()
    return rows, labels[rows]


def human_labels(args: argparse.Namespace, rows: np.ndarray, *, column: str) -> np.ndarray:
    """The annotators' labels (`column` of --human-labels: worst, aggre, random1..3) of the training `rows`."""
    table = pq.read_table(args.human_labels, columns=["row", column])
    by_row = dict(zip(table.column("row").to_numpy().tolist(), table.column(column).to_numpy().tolist()))
    return np.array([by_row[row] for row in rows.tolist()], dtype=np.int64)


def reference_for(args: argparse.Namespace, scratch: Path, train_rows: np.ndarray, true_labels: np.ndarray,
                  fold: int | None = None) -> np.ndarray | None:
    """The clean-label reference probabilities of the protocol's training rows (reference_probs.py)."""
    source = Path(args.data)
    recipe = {**protocol_recipe(args), "seed": args.reference_seed}
    protocol = {"data": str(source.resolve()), "train_per_class": args.train_per_class,
                **({"smallest_class": args.smallest_class} if args.smallest_class else {})}
    if args.reference_source == "folds":
        write_subset(source / "train.parquet", train_rows, true_labels, scratch / "clean" / "train.parquet")
        return cached_reference(scratch / "clean", true_labels, recipe, protocol, fold=fold)
    outside_rows = other_rows(source, train_rows, args.reference_per_class)
    labels = pq.read_table(source / "train.parquet", columns=["label"]).column("label").to_numpy()
    rows = np.concatenate([outside_rows, train_rows])
    write_subset(source / "train.parquet", rows, labels[rows], scratch / "clean" / "train.parquet")
    return cached_reference(scratch / "clean", labels[rows], recipe, protocol, outside=len(outside_rows))


def other_rows(source: Path, train_rows: np.ndarray, per_class: int) -> np.ndarray:
    """Rows of source/train.parquet outside the protocol's `train_rows`: the first `per_class` of each class (all
    of them when 0), in file order."""
    labels = pq.read_table(source / "train.parquet", columns=["label"]).column("label").to_numpy()
    others = np.setdiff1d(np.arange(len(labels)), train_rows)
    return others[first_per_class(labels[others], per_class)]


def protocol_recipe(args: argparse.Namespace) -> dict:
    """The training options of the protocol, as `labelscrub.clean` and `retrain` take them."""
    recipe = dict(epochs=args.epochs, stem=args.stem, image_size=args.image_size, device=args.device, seed=args.seed)
    # Each only when given, so the reference cache keys of earlier runs still match.
    if args.batch_size is not None:
        recipe["batch_size"] = args.batch_size
    if args.precision is not None:
        recipe["precision"] = args.precision
    return recipe


def run_setting(setting: str, args: argparse.Namespace, scratch: Path, out: Path) -> list[dict]:
    data, true_labels, noisy = plant(setting, args, scratch)
    flipped = noisy != true_labels
    test_count = pq.read_metadata(data / "test.parquet").num_rows
    rho_max = args.rho_max if args.rho_max is not None else max(float(flipped.mean()), 0.0)
    recipe = protocol_recipe(args)
    schedule = dict(warmup=args.warmup, ramp=args.ramp)
    print(f"== {setting}: {len(noisy)} train ({int(flipped.sum())} flipped), {test_count} test, "
          f"rho_max {rho_max:.3f}", flush=True)

    rows, erm_seconds = [], None
    for spec in sorted(args.methods, key=lambda name: name != "erm"):  # erm first: the time reference
        method, variant = parse_method_spec(spec)
        started = time.perf_counter()
        result = labelscrub.clean(data, out / spec.replace(":", "_").replace(",", "_"), overwrite=True,
                                  **{"method": method, "rho_max": rho_max, **schedule, **recipe, **variant})
        seconds = time.perf_counter() - started
        erm_seconds = seconds if method == "erm" else erm_seconds
        report = result.report()
        dropped = dropped_by_row(report, len(noisy))
        area = auroc(score_by_row(report, len(noisy)), flipped)
        rows.append(_row(setting, spec, detection_scores(dropped, flipped), area,
                         retrain_accuracy(result, spec), seconds, erm_seconds,
                         trainings=2 if method == "oneshot" else 1,
                         heldout=result.heldout_accuracy,
                         estimate=(result.summary.get("noise") or {}).get("estimated_noise_rate")))
        print(json.dumps(rows[-1]), flush=True)
    if args.oracle:
        started = time.perf_counter()
        accuracy = retrain_kept(data, ~flipped, recipe, out / "oracle")
        rows.append(_row(setting, "oracle (drops exactly the flips)", detection_scores(flipped, flipped),
                         auroc(flipped.astype(float), flipped), accuracy, time.perf_counter() - started, erm_seconds,
                         trainings=1, heldout=None))
        print(json.dumps(rows[-1]), flush=True)
    if args.cleanlab:
        rows.append(run_cleanlab(setting, data, noisy, flipped, recipe, out / "cleanlab", erm_seconds))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def retrain_accuracy(result: labelscrub.CleanResult, spec: str) -> float:
    """Test accuracy of a fresh model trained on what the run kept.

    Plain `erm` keeps every sample, so its retrain would repeat its clean run: the same samples, recipe, seed and
    test split (the planted data's test.parquet is the held-out split the clean run measures). Both gave the same
    accuracy in the runs of BENCHMARKS.md that made both (54.7% and 41.6%), so erm reuses its clean run's
    accuracy and saves a training."""
    if spec == "erm":
        return result.heldout_accuracy
    return labelscrub.retrain(result.out_dir, out=result.out_dir / "retrain", overwrite=True).accuracy


def run_cleanlab(setting: str, data: Path, noisy: np.ndarray, flipped: np.ndarray, recipe: dict, out: Path,
                 erm_seconds: float | None) -> dict:
    """5-fold out-of-sample probabilities with labelscrub's own network and recipe, then cleanlab's filter."""
    from cleanlab.filter import find_label_issues

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="labelscrub-cv-") as scratch:
        pred_probs = out_of_fold_probabilities(data, noisy, CV_FOLDS, recipe, Path(scratch))
    issues = find_label_issues(labels=noisy, pred_probs=pred_probs)
    seconds = time.perf_counter() - started
    # Self-confidence (probability of the given label) is cleanlab's default ranking; lower = more suspect.
    score = 1.0 - pred_probs[np.arange(len(noisy)), noisy]
    accuracy = retrain_kept(data, ~issues, recipe, out)
    return _row(setting, "cleanlab (5-fold CV)", detection_scores(issues, flipped), auroc(score, flipped),
                accuracy, seconds, erm_seconds, trainings=CV_FOLDS, heldout=None)


def report_rows(report: pa.Table) -> np.ndarray:
    """The row of data/train.parquet behind each report row (sample ids read "train.parquet:ROW")."""
    return np.array([int(sample.split(":")[1]) for sample in report.column("sample_id").to_pylist()])


def score_by_row(report: pa.Table, count: int) -> np.ndarray:
    """(count,) the report's `score` per row of data/train.parquet (NaN where there is none)."""
    score = np.full(count, np.nan)
    score[report_rows(report)] = report.column("score").to_numpy(zero_copy_only=False)
    return score


def dropped_by_row(report: pa.Table, count: int) -> np.ndarray:
    """(count,) bool: True for the rows of data/train.parquet that the run's report marks dropped."""
    dropped = np.zeros(count, bool)
    dropped[report_rows(report)] = report.column("dropped").to_numpy(zero_copy_only=False)
    return dropped


def retrain_kept(data: Path, kept: np.ndarray, recipe: dict, out: Path, labels: np.ndarray | None = None) -> float:
    """Test accuracy of a model retrained on the `kept` rows of data/train.parquet, under `labels` (one class
    index per row) where given instead of the file's."""
    out.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(data / "train.parquet")
    if labels is not None:
        table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.int64()))
        table = table.replace_schema_metadata(pq.read_schema(data / "train.parquet").metadata)
    pq.write_table(table.filter(pa.array(kept)), out / "manifest.parquet")
    return labelscrub.retrain(out / "manifest.parquet", test=data / "test.parquet", out=out / "retrain",
                              overwrite=True, **recipe).accuracy


def _row(setting, method, detection, area, accuracy, seconds, erm_seconds, *, trainings, heldout,
         estimate=None) -> dict:
    """One table row; `estimate` is the run's own estimate of the noise rate (auto), else None."""
    return {"noise": setting, "method": method, "estimated_noise_rate": estimate, **detection, "auroc": area,
            "retrain_accuracy": accuracy,
            "clean_heldout_accuracy": heldout, "seconds": seconds,
            "time_vs_erm": seconds / erm_seconds if erm_seconds else None, "trainings": trainings}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| noise | method | precision | recall | F1 | AUROC | retrain acc | clean-run acc | wall s | x erm "
             "| trainings |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        heldout = "" if row["clean_heldout_accuracy"] is None else f"{row['clean_heldout_accuracy']:.1%}"
        ratio = "" if row["time_vs_erm"] is None else f"{row['time_vs_erm']:.2f}"
        lines.append(f"| {row['noise']} | {row['method']} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['f1']:.3f} | {row['auroc']:.3f} | {row['retrain_accuracy']:.1%} | {heldout} | "
                     f"{row['seconds']:.0f} | {ratio} | {row['trainings']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
