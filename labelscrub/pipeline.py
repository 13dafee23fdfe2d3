"""`clean()`: the whole job, joining the stages in a fixed order: options -> data -> decode -> train -> outputs.

This is the only module that writes files (through `report`, `manifest` and `atomic`); the CLI is a thin layer on
top of it and Python callers get the same results as a `CleanResult`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from labelscrub import checkpoint
from labelscrub.atomic import outputs_together, write_text
from labelscrub.audit import AUDIT_NAME, write_audit
from labelscrub.config import MANIFEST_FORMATS, CleanConfig
from labelscrub.errors import LabelscrubError
from labelscrub.images import typical_side
from labelscrub.manifest import manifest_format_for, write_manifest
from labelscrub.methods import Task, train_with_method
from labelscrub.model import cpu_state_dict, pick_device
from labelscrub.noise import noise_summary
from labelscrub.outputs import (
    CACHE_FOLDER,
    CHECKPOINT_NAME,
    decode_to_device,
    load_checkpoint,
    prepare_out_dir,
    save_checkpoint,
    save_model,
)
from labelscrub.progress import Progress, decoding
from labelscrub.report import build_report, write_report
from labelscrub.schedule import rho_schedule
from labelscrub.sources import LabeledImages, open_data, read_heldout
from labelscrub.version import __version__

OUTPUT_NAMES = ("report.parquet", "model.pt", "run.json")


def score_meaning(config: CleanConfig) -> str:
    """What the report's `score` column holds, in words, for the report metadata."""
    if config.method == "oneshot":
        return "loss of the ranking model after the warm-up epochs; higher = more likely mislabeled"
    measured = ("cross-entropy of the given label" if config.rank_by == "loss"
                else "log-probability of the best other class minus that of the given label")
    where = ("in the training forward pass (augmented)" if config.loss_pass == "train"
             else "in the probe pass (eval mode, un-augmented)")
    over = "last epoch" if config.smoothing == 0 else f"moving average over epochs (smoothing {config.smoothing:g})"
    return f"{measured}, measured {where}, {over}; higher = more likely mislabeled"


@dataclass
class CleanResult:
    out_dir: Path
    report_path: Path
    manifest_path: Path
    model_path: Path
    run_json_path: Path
    class_names: list[str]
    n_samples: int
    n_dropped: int
    n_unreadable: int
    heldout_accuracy: float | None
    dropped_ids: list[str]
    summary: dict[str, Any] = field(repr=False)  # the content of run.json
    audit_path: Path | None = None  # the review page, None when not written (audit=False, or it failed)

    def report(self):
        """The report as a pyarrow Table (`.to_pandas()` for a DataFrame)."""
        return pq.read_table(self.report_path)


def clean(data: str | Path, out: str | Path, *, overwrite: bool = False, resume: bool = False,
          progress: Progress | None = None, audit: bool = True, **options: Any) -> CleanResult:
    """Train a ResNet-18 with the Step-E schedule on DATA and write report.parquet, the cleaned manifest,
    model.pt and run.json into `out`, and (unless `audit=False`) the review page audit.html. `options` are the
    fields of `CleanConfig`. With `resume=True` the run continues from the checkpoint an interrupted run with the
    same data and options left in `out`.

    Example:
        result = labelscrub.clean("sample_data/digits", "runs/digits", epochs=15, rho_max=0.2)
        print(result.n_dropped, result.manifest_path)
    """
    started = time.perf_counter()
    config = _make_config(options)
    data_path, out_dir = Path(data), Path(out)
    prepare_out_dir(out_dir, data_path, overwrite, resume=resume)

    split = open_data(data_path, image_column=config.image_column, label_column=config.label_column,
                      id_column=config.id_column, allow_outside_root=config.allow_outside_root)
    train_set = split.train
    heldout_set = split.heldout
    if config.holdout is not None:
        heldout_set = read_heldout(config.holdout, train_set.class_names, image_column=config.image_column,
                                   label_column=config.label_column, id_column=config.id_column)
    manifest_format = manifest_format_for(train_set, config.manifest_format)
    config = config.resolve(typical_side(train_set))
    device = pick_device(config.device)

    cache_dir = out_dir / CACHE_FOLDER
    try:
        pixels, trainable_labels, errors = decode_to_device(train_set, config, cache_dir, "train.npy", device,
                                                            on_progress=decoding(progress, "train"))
        heldout = None
        if heldout_set is not None:
            heldout = decode_to_device(heldout_set, config, cache_dir, "heldout.npy", device,
                                       on_progress=decoding(progress, "held-out"))[:2]
        eligible = trainable_labels >= 0
        _check_trainable(train_set, eligible, errors, config.max_bad_fraction)
        load_seconds = time.perf_counter() - started

        current = checkpoint.fingerprint(data=str(data_path.resolve()), config=config.to_dict(),
                                         sample_ids=train_set.sample_ids, labels=train_set.labels)
        saved = load_checkpoint(out_dir, current) if resume else None
        outcome = train_with_method(Task(
            pixels=pixels, labels=train_set.labels, sample_ids=train_set.sample_ids,
            eligible=eligible, num_classes=len(train_set.class_names), config=config, device=device,
            heldout=heldout, progress=progress or Progress(), resume=saved, fingerprint=current,
            on_checkpoint=lambda payload: save_checkpoint(out_dir, payload)))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    dropped = eligible & ~outcome.final_kept
    # --relabel: a dropped sample with a confident suggestion goes back into the manifest under that label.
    rescued = dropped & (outcome.suggested >= 0) if config.relabel else np.zeros_like(dropped)
    relabelled = rescued & (outcome.suggested != train_set.labels)  # the others keep their own, confirmed label
    noise = noise_summary(estimate=outcome.noise, confusion=outcome.confusion, rho_max=outcome.rho_max,
                          labels=train_set.labels, predicted=outcome.predicted, eligible=eligible, dropped=dropped,
                          relabelled=relabelled, class_names=train_set.class_names)
    metadata = _metadata(config, data_path, train_set, outcome, noise)
    report = build_report(
        sample_ids=train_set.sample_ids, labels=train_set.labels, class_names=train_set.class_names,
        predicted=outcome.predicted, p_label=outcome.p_label, final_loss=outcome.final_loss,
        score=outcome.score, loss_history=outcome.loss_history, kept_history=outcome.kept_history,
        dropped=dropped, confused_with=_confused_with(outcome, train_set.labels), suggested=outcome.suggested,
        suggestion_confidence=outcome.suggestion_confidence, errors=errors, metadata=metadata)
    report_path, model_path, run_json_path = out_dir / "report.parquet", out_dir / "model.pt", out_dir / "run.json"
    with outputs_together():  # the report, manifest, model and run.json appear together or not at all
        write_report(report, report_path)
        manifest_path = write_manifest(train_set, (outcome.final_kept & eligible) | rescued, out_dir,
                                       manifest_format, metadata,
                                       labels=np.where(relabelled, outcome.suggested, train_set.labels))
        save_model(cpu_state_dict(outcome.model), model_path, train_set.class_names, config, outcome.normalization)
        summary = _run_summary(config, data_path, train_set, heldout_set, eligible, dropped, rescued, relabelled,
                               errors, outcome, noise, load_seconds, time.perf_counter() - started, device,
                               outputs={"report": report_path, "manifest": manifest_path, "model": model_path,
                                        "run": run_json_path})
        write_text(run_json_path, json.dumps(summary, indent=2) + "\n")
    (out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)  # every output is in place; nothing left to resume
    # A manifest of another format left by the run this one overwrote would be mistaken for this run's.
    for stale in (out_dir / f"manifest.{fmt}" for fmt in MANIFEST_FORMATS):
        if stale != manifest_path:
            stale.unlink(missing_ok=True)
    audit_page = _write_audit(out_dir, progress) if audit else None
    if audit_page is None:  # a page left by the run this one overwrote would show that run
        (out_dir / AUDIT_NAME).unlink(missing_ok=True)
    return CleanResult(
        audit_path=audit_page,
        out_dir=out_dir, report_path=report_path, manifest_path=manifest_path, model_path=model_path,
        run_json_path=run_json_path, class_names=train_set.class_names, n_samples=len(train_set),
        n_dropped=int(dropped.sum()), n_unreadable=int((~eligible).sum()),
        heldout_accuracy=summary["heldout_accuracy"],
        dropped_ids=[sample_id for sample_id, flag in zip(train_set.sample_ids, dropped.tolist()) if flag],
        summary=summary)


def _make_config(options: dict[str, Any]) -> CleanConfig:
    known = {f.name for f in dataclasses.fields(CleanConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise LabelscrubError(f"unknown option(s) {', '.join(unknown)}; valid options are {', '.join(sorted(known))}")
    return CleanConfig(**options)


def _check_trainable(images: LabeledImages, eligible: np.ndarray, errors: list[str | None],
                     max_bad_fraction: float) -> None:
    bad = [(sample_id, error) for sample_id, error in zip(images.sample_ids, errors) if error]
    if len(bad) > max_bad_fraction * len(images):
        listed = "; ".join(f"{sample_id}: {error}" for sample_id, error in bad[:3])
        raise LabelscrubError(f"{images.location}: {len(bad)} of {len(images)} samples cannot be read, more than "
                              f"--max-bad-fraction {max_bad_fraction:g} allows (first: {listed}); fix the data or "
                              "raise the limit")
    if not eligible.any():
        raise LabelscrubError(f"{images.location}: no sample could be read; check the images")
    present = sorted({images.class_names[label] for label in images.labels[eligible]})
    if len(present) < 2:
        raise LabelscrubError(f"{images.location}: only one class ({present[0]}) has readable samples; "
                              "cleaning labels needs at least two classes")


def _confused_with(outcome, labels: np.ndarray) -> np.ndarray:
    """Per sample the class its label came from, for the samples left out as confused; -1 elsewhere."""
    if outcome.confusion is None:
        return np.full(len(labels), -1, np.int64)
    return np.where(outcome.confused, outcome.confusion.source[np.maximum(labels, 0)], -1)


def _metadata(config: CleanConfig, data_path: Path, images: LabeledImages, outcome,
              noise: dict[str, Any]) -> dict[str, Any]:
    return {
        "labelscrub_version": __version__,
        "data": str(data_path.resolve()),  # retrain --compare and its held-out data come from here
        "config": config.to_dict(),
        "class_names": images.class_names,
        "rho_schedule": rho_schedule(config.epochs, rho_max=outcome.rho_max, warmup=config.warmup, ramp=config.ramp),
        "noise": noise,
        "epochs": [dataclasses.asdict(summary) for summary in outcome.epochs],
        "normalization": outcome.normalization,
        "method": config.method,
        "score": score_meaning(config),
    }


def _write_audit(out_dir: Path, progress: Progress | None) -> Path | None:
    """The review page; the run's outputs are complete without it, so a failure is a warning, not an error."""
    try:
        return write_audit(out_dir, out_dir / AUDIT_NAME).path
    except (LabelscrubError, OSError) as error:
        (progress or Progress()).note(f"the audit page was not written ({error}); "
                                      f"try again with `labelscrub audit {out_dir}`")
        return None


def _run_summary(config: CleanConfig, data_path: Path, images: LabeledImages, heldout: LabeledImages | None,
                 eligible: np.ndarray, dropped: np.ndarray, rescued: np.ndarray, relabelled: np.ndarray,
                 errors: list[str | None], outcome, noise: dict[str, Any], load_seconds: float, total_seconds: float,
                 device: torch.device,
                 outputs: dict[str, Path]) -> dict[str, Any]:
    epochs = outcome.epochs
    dropped_by_class = Counter(images.class_names[label] for label in images.labels[dropped])
    train_seconds = sum(e.train_seconds for e in epochs)
    probe_seconds = sum(e.probe_seconds for e in epochs)
    return {
        "labelscrub_version": __version__,
        "data": str(data_path),
        "device": str(device),
        "counts": {
            "samples": len(images), "trainable": int(eligible.sum()), "unreadable": int((~eligible).sum()),
            "dropped": int(dropped.sum()), "kept": int((eligible & ~dropped).sum()),
            # --relabel: dropped samples written to the manifest under their suggested label (or, where the
            # suggestion is the given label, under that label)
            "relabelled": int(relabelled.sum()),
            "restored": int((rescued & ~relabelled).sum()),
            "in_manifest": int(((eligible & ~dropped) | rescued).sum()),
            "with_suggestion": int((eligible & (outcome.suggested >= 0)).sum()),
            "classes": len(images.class_names), "heldout_samples": len(heldout) if heldout is not None else 0,
        },
        "class_names": images.class_names,
        "dropped_by_class": {name: dropped_by_class.get(name, 0) for name in images.class_names},
        "noise": noise,
        "notes": images.notes,
        "unreadable_samples": [{"sample_id": sample_id, "error": error}
                               for sample_id, error in zip(images.sample_ids, errors) if error][:100],
        "rho_schedule": [e.rho for e in epochs],
        "heldout_accuracy": epochs[-1].heldout_accuracy if epochs else None,
        "epochs": [dataclasses.asdict(e) for e in epochs],
        "timings": {"load_seconds": load_seconds, "train_seconds": train_seconds, "probe_seconds": probe_seconds,
                    "total_seconds": total_seconds},
        "throughput": {
            "train_images_per_second": sum(e.trained for e in epochs) / max(train_seconds, 1e-9),
            # None with the "train" loss pass: there is no separate probe pass to time
            "probe_images_per_second": (int(eligible.sum()) * len(epochs) / probe_seconds) if probe_seconds else None,
        },
        "outputs": {name: str(path) for name, path in outputs.items()},
        "config": config.to_dict(),
    }
