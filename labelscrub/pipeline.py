"""`clean()`: the whole job, joining the stages in a fixed order: options -> data -> decode -> train -> outputs.

The training stages write no file: each epoch's checkpoint goes to a callback, which saves it; the outputs
(report, manifest, model, run.json, then the audit page) are written here at the end, the first four together
(`atomic.outputs_together`). The CLI is a thin layer on top; Python callers get the same results as a `CleanResult`.

Under torchrun (distributed.py) every process runs `clean`; rank 0 alone prepares the output folder, reads the
checkpoint, shows progress and writes, and the other processes return None.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

import labelscrub.checkpoint as checkpoint
import labelscrub.distributed as distributed
from labelscrub.atomic import outputs_together, write_text
from labelscrub.audit import AUDIT_NAME, write_audit
from labelscrub.config import CleanConfig
from labelscrub.decoding import decode_to_device, spill_folder
from labelscrub.distributed import Processes
from labelscrub.errors import LabelscrubError
from labelscrub.failures import watching
from labelscrub.images import typical_side
from labelscrub.manifest import cleaned_again_note, manifest_format_for, remove_other_manifests, write_manifest
from labelscrub.measurement import TrainingOutcome
from labelscrub.methods import train_with_method
from labelscrub.model import cpu_state_dict, save_model
from labelscrub.outfolder import prepare_out_dir, restart_note
from labelscrub.precision import with_precision
from labelscrub.progress import Progress, decoding
from labelscrub.report import build_report, write_report
from labelscrub.sources import LabeledImages, open_data, read_heldout
from labelscrub.summary import Run, Selection, Timings, noise_summary, report_metadata, run_summary
from labelscrub.task import Task


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
          progress: Progress | None = None, audit: bool = True, **options: Any) -> CleanResult | None:
    """Train a ResNet-18 with the Step-E schedule on DATA and write report.parquet, the cleaned manifest,
    model.pt and run.json into `out`, and (unless `audit=False`) the review page audit.html. `options` are the
    fields of `CleanConfig`. With `resume=True` the run continues from the checkpoint an interrupted run with the
    same data and options left in `out`. Under torchrun, processes other than rank 0 return None.

    Example:
        result = labelscrub.clean("sample_data/digits", "runs/digits", epochs=15, rho_max=0.2)
        print(result.n_dropped, result.manifest_path)
    """
    started = time.perf_counter()
    data_path, out_dir = Path(data), Path(out)
    with distributed.start(options.get("device", "auto")) as processes, watching(processes):
        # rank 0 checks first: an error in the options, the folder or the data is reported once, not by every process
        config = processes.first_on_main(lambda: _make_config(options))
        resume = processes.from_main(lambda: prepare_out_dir(out_dir, data_path, overwrite, resume=resume,
                                                             restarted=processes.restarts > 0))
        progress = (progress or Progress()) if processes.is_main else Progress()
        if note := restart_note(processes.restarts, resume, out_dir):
            progress.note(note)
        images, heldout_images, manifest_format = processes.first_on_main(lambda: _open(data_path, config))
        given = config
        config = with_precision(config.resolve(typical_side(images), processes=processes.size), processes.device)
        current = checkpoint.fingerprint(data=str(data_path.resolve()), config=checkpoint.as_given(config, given),
                                         sample_ids=images.sample_ids, labels=images.labels)
        checkpoint.check_same_everywhere(current, processes)
        saved = processes.from_main(lambda: checkpoint.load(out_dir, current)) if resume else None
        config = processes.first_on_main(lambda: checkpoint.keep_global_batch(config, saved, processes.size))
        run, eligible, outcome, load_seconds = _decode_and_train(
            data_path, out_dir, config, images, heldout_images, current, saved, progress=progress,
            processes=processes, started=started)
        if not processes.is_main:
            return None
    selection = Selection.of(outcome, images.labels, eligible, relabel=config.relabel,
                             relabel_confidence=config.relabel_confidence)
    paths, summary = _write_outputs(run, outcome, selection, manifest_format, out_dir, load_seconds, started,
                                    distributed=processes.summary(config))
    audit_page = _write_audit(out_dir, progress) if audit else None
    if audit_page is None:  # a page left by the run this one overwrote would show that run
        (out_dir / AUDIT_NAME).unlink(missing_ok=True)
    return CleanResult(
        out_dir=out_dir, report_path=paths["report"], manifest_path=paths["manifest"], model_path=paths["model"],
        run_json_path=paths["run"], class_names=images.class_names, n_samples=len(images),
        n_dropped=int(selection.dropped.sum()), n_unreadable=int((~eligible).sum()),
        heldout_accuracy=summary["heldout_accuracy"],
        dropped_ids=[sample_id for sample_id, flag in zip(images.sample_ids, selection.dropped.tolist()) if flag],
        summary=summary, audit_path=audit_page)


def _decode_and_train(data_path: Path, out_dir: Path, config: CleanConfig, images: LabeledImages,
                      heldout_images: LabeledImages | None, current: dict[str, Any], saved: dict | None, *,
                      progress: Progress, processes: Processes,
                      started: float) -> tuple[Run, np.ndarray, TrainingOutcome, float]:
    """Decode the samples (spilling to the cache folder, removed afterwards) and train, from the checkpoint
    `saved` if there is one, saving checkpoints with the fingerprint `current`. Returns the run, the
    readable-and-labelled mask, the training outcome and the seconds until training began."""
    device = processes.device
    with spill_folder(out_dir) as cache_dir:
        pixels, trainable_labels, errors = decode_to_device(images, config, cache_dir, "train.npy", device,
                                                            on_progress=decoding(progress, "train"),
                                                            processes=processes)
        heldout = None
        if heldout_images is not None:
            heldout = decode_to_device(heldout_images, config, cache_dir, "heldout.npy", device,
                                       on_progress=decoding(progress, "held-out"), processes=processes)[:2]
        eligible = trainable_labels >= 0
        processes.first_on_main(lambda: _check_trainable(images, eligible, errors, config.max_bad_fraction))
        load_seconds = time.perf_counter() - started
        run = Run(data_path=data_path, config=config, images=images, heldout=heldout_images, errors=errors,
                  device=device)
        outcome = _train(run, pixels, eligible, heldout, out_dir, current, saved, progress=progress,
                         processes=processes)
    return run, eligible, outcome, load_seconds


def _make_config(options: dict[str, Any]) -> CleanConfig:
    known = {f.name for f in dataclasses.fields(CleanConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise LabelscrubError(f"unknown option(s) {', '.join(unknown)}; valid options are {', '.join(sorted(known))}")
    return CleanConfig(**options)


def _open(data_path: Path, config: CleanConfig) -> tuple[LabeledImages, LabeledImages | None, str]:
    """The training samples, the held-out samples (--holdout's, else the input's own val/test split) and the
    manifest format."""
    split = open_data(data_path, image_column=config.image_column, label_column=config.label_column,
                      id_column=config.id_column, allow_outside_root=config.allow_outside_root)
    note = cleaned_again_note(data_path)
    if note:
        split.train.notes.append(note)
    heldout = split.heldout
    if config.holdout is not None:
        heldout = read_heldout(config.holdout, split.train.class_names, image_column=config.image_column,
                               label_column=config.label_column, id_column=config.id_column)
    return split.train, heldout, manifest_format_for(split.train, config.manifest_format)


def _train(run: Run, pixels: torch.Tensor, eligible: np.ndarray, heldout: tuple[torch.Tensor, np.ndarray] | None,
           out_dir: Path, current: dict[str, Any], saved: dict | None, *, progress: Progress,
           processes: Processes) -> TrainingOutcome:
    """Train with the configured method, saving a checkpoint after every epoch (rank 0); from `saved`, the one an
    interrupted run of the same data and options left (read by rank 0 and sent to every process), if any."""
    images, config = run.images, run.config
    return train_with_method(Task(
        pixels=pixels, labels=images.labels, sample_ids=images.sample_ids, eligible=eligible,
        num_classes=len(images.class_names), config=config, device=run.device, heldout=heldout, progress=progress,
        resume=saved, fingerprint=current, processes=processes,
        on_checkpoint=(lambda payload: checkpoint.save(out_dir, payload)) if processes.is_main else None))


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


def _write_outputs(run: Run, outcome: TrainingOutcome, selection: Selection, manifest_format: str, out_dir: Path,
                   load_seconds: float, started: float, *,
                   distributed: dict[str, Any] | None) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the report, manifest, model and run.json; return their paths (keyed as in run.json) and run.json's
    content. The checkpoint goes once they are all in place."""
    images = run.images
    noise = noise_summary(estimate=outcome.noise, mistakes=outcome.mistakes, confusion=outcome.confusion,
                          rho_max=outcome.rho_max, labels=images.labels, predicted=outcome.predicted,
                          eligible=selection.eligible, dropped=selection.dropped, relabelled=selection.relabelled,
                          class_names=images.class_names)
    metadata = report_metadata(run, outcome, noise)
    report = build_report(images, outcome, dropped=selection.dropped,
                          confused_with=_confused_with(outcome, images.labels), errors=run.errors, metadata=metadata)
    paths = {"report": out_dir / "report.parquet", "model": out_dir / "model.pt", "run": out_dir / "run.json"}
    with outputs_together():  # the report, manifest, model and run.json appear together or not at all
        write_report(report, paths["report"])
        paths["manifest"] = write_manifest(images, selection.in_manifest, out_dir, manifest_format, metadata,
                                           labels=selection.manifest_labels)
        save_model(cpu_state_dict(outcome.model), paths["model"], images.class_names, run.config,
                   outcome.normalization)
        timings = Timings(load_seconds=load_seconds, total_seconds=time.perf_counter() - started)
        summary = run_summary(run, outcome, selection, noise, timings, outputs={
            name: paths[name] for name in ("report", "manifest", "model", "run")}, distributed=distributed)
        write_text(paths["run"], json.dumps(summary, indent=2) + "\n")
    checkpoint.remove(out_dir)
    remove_other_manifests(out_dir, paths["manifest"])
    return paths, summary


def _confused_with(outcome: TrainingOutcome, labels: np.ndarray) -> np.ndarray:
    """Per sample the class its label came from, for the samples left out as confused; -1 elsewhere."""
    if outcome.confusion is None:
        return np.full(len(labels), -1, np.int64)
    return np.where(outcome.confused, outcome.confusion.source[np.maximum(labels, 0)], -1)


def _write_audit(out_dir: Path, progress: Progress) -> Path | None:
    """The review page; the run's outputs are complete without it, so a failure is a warning, not an error."""
    try:
        return write_audit(out_dir, out_dir / AUDIT_NAME).path
    except (LabelscrubError, OSError) as error:
        progress.note(f"the audit page was not written ({error}); try again with `labelscrub audit {out_dir}`")
        return None

