"""Run folders for tests of what reads a clean run (apply, audit): a fake one built without training, whose
report and run.json say exactly what a test chose, and a tiny copy of the sample digits for real runs."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from conftest import DIGITS

from labelscrub.config import CleanConfig
from labelscrub.report import build_report, write_report
from labelscrub.sources import open_data


def fake_run(run_dir: Path, data: Path, *, dropped: list[str], suggested: dict[str, int] | None = None,
             unreadable: tuple[str, ...] = (), relabel: bool = False, scores: dict[str, float] | None = None,
             with_run_json: bool = False, id_column: str | None = None,
             p_label: dict[str, float] | None = None, confidence: dict[str, float] | None = None) -> Path:
    """A clean run's folder: the report of `data` with the `dropped` sample ids left out and, per sample id, a
    suggested class index and a score (default 0). With `with_run_json`, also the run.json such a run writes
    (the counts, per-class rows and noise matrix that follow from the report, three epochs of curves). `id_column`:
    the Parquet column of sample ids, as `clean --id-column` takes it; `p_label`: per sample id, the probability of
    its label (default 0); `confidence`: per suggested sample id, how sure the suggestion is (default 0.99)."""
    images = open_data(data, id_column=id_column).train
    count = len(images)
    zeros = np.zeros(count, np.float32)
    suggestions = suggested or {}
    score = np.array([(scores or {}).get(i, 0.0) for i in images.sample_ids], np.float32)
    metadata = {"data": str(data.resolve()), "config": CleanConfig(relabel=relabel, id_column=id_column).to_dict(),
                "class_names": images.class_names}
    is_dropped = np.isin(images.sample_ids, dropped)
    errors = ["cannot decode the image" if i in unreadable else None for i in images.sample_ids]
    measured = SimpleNamespace(
        predicted=images.labels, final_loss=zeros, score=score,
        p_label=np.array([(p_label or {}).get(i, 0.0) for i in images.sample_ids], np.float32),
        loss_history=np.tile(np.arange(3, dtype=np.float32)[:, None], (1, count)),
        kept_history=np.ones((3, count), bool), suggested=np.array([suggestions.get(i, -1) for i in images.sample_ids]),
        suggestion_confidence=np.array([(confidence or {}).get(i, 0.99) if i in suggestions else math.nan
                                        for i in images.sample_ids], np.float32))
    report = build_report(images, measured, dropped=is_dropped, confused_with=np.full(count, -1), errors=errors,
                          metadata=metadata)
    run_dir.mkdir(parents=True)
    write_report(report, run_dir / "report.parquet")
    if with_run_json:
        _write_run_json(run_dir, data, images, is_dropped, errors, metadata["config"])
    return run_dir


def synthetic_run(run_dir: Path, *, class_names: list[str], samples: int, dropped_share: float = 0.1,
                  seed: int = 0) -> Path:
    """A clean run's folder without data: report.parquet and run.json of `samples` made-up samples (ids s0000000,
    ...) spread at random over `class_names`, with random scores, the highest `dropped_share` of them dropped with a
    suggestion. Its page has no pictures; for runs too big to build from image files."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(class_names), samples)
    images = SimpleNamespace(sample_ids=[f"s{index:07d}" for index in range(samples)], labels=labels,
                             class_names=class_names)
    score = rng.random(samples, dtype=np.float32)
    dropped = score >= np.quantile(score, 1 - dropped_share)
    predicted = np.where(dropped, (labels + 1) % len(class_names), labels)
    measured = SimpleNamespace(
        predicted=predicted, p_label=rng.random(samples, dtype=np.float32), final_loss=score, score=score,
        loss_history=np.outer(np.arange(1, 4, dtype=np.float32), score), kept_history=np.ones((3, samples), bool),
        suggested=np.where(dropped, predicted, -1), suggestion_confidence=rng.random(samples, dtype=np.float32))
    errors = [None] * samples
    metadata = {"config": CleanConfig().to_dict(), "class_names": class_names}  # no data: no pictures
    report = build_report(images, measured, dropped=dropped, confused_with=np.full(samples, -1), errors=errors,
                          metadata=metadata)
    run_dir.mkdir(parents=True)
    write_report(report, run_dir / "report.parquet")
    _write_run_json(run_dir, None, images, dropped, errors, metadata["config"])
    return run_dir


def _write_run_json(run_dir: Path, data: Path | None, images, dropped: np.ndarray, errors: list,
                    config: dict) -> None:
    names = images.class_names
    readable = np.array([error is None for error in errors])
    per_class = np.bincount(images.labels[readable], minlength=len(names))
    dropped_per_class = np.bincount(images.labels[dropped], minlength=len(names))
    classes = {name: {"samples": int(per_class[label]), "estimated_noise_rate": 0.25, "confused_share": None,
                      "confused_with": None, "dropped": int(dropped_per_class[label]), "relabelled": 0}
               for label, name in enumerate(names)}
    matrix = [{"given": names[label], "predicted": names[(label + 1) % len(names)],
               "count": int(dropped_per_class[label])} for label in range(len(names))]
    run = {
        "data": None if data is None else str(data), "class_names": names, "config": config, "heldout_accuracy": 0.875,
        "counts": {"samples": len(images.sample_ids), "trainable": int(readable.sum()),
                   "unreadable": int((~readable).sum()),
                   "dropped": int(dropped.sum()), "kept": int((readable & ~dropped).sum()), "relabelled": 0,
                   "restored": 0, "in_manifest": int((readable & ~dropped).sum()), "classes": len(names)},
        "dropped_by_class": {name: entry["dropped"] for name, entry in classes.items()},
        "noise": {"estimated_noise_rate": 0.25, "rho_max_used": 0.25, "estimate_doubt": None, "classes": classes,
                  "noise_matrix": [cell for cell in matrix if cell["count"]]},
        "unreadable_samples": [{"sample_id": sample_id, "error": error}
                               for sample_id, error in zip(images.sample_ids, errors) if error],
        "epochs": [{"epoch": epoch, "rho": 0.1 * epoch, "heldout_accuracy": 0.5 + 0.1 * epoch,
                    "kept_loss": 2.0 - 0.5 * epoch, "left_out_loss": None if epoch == 0 else 2.5}
                   for epoch in range(3)],
        "outputs": {"report": str(run_dir / "report.parquet")},
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))


def tiny_digits(folder: Path, train_per_class: int = 12, heldout_per_class: int = 4) -> Path:
    """The first images of every digit of the sample, train/ and val/ splits, copied into `folder`."""
    for split, per_class in (("train", train_per_class), ("val", heldout_per_class)):
        for class_folder in sorted((DIGITS / split).iterdir()):
            (folder / split / class_folder.name).mkdir(parents=True)
            for image in sorted(class_folder.iterdir())[:per_class]:
                shutil.copy(image, folder / split / class_folder.name / image.name)
    return folder
