"""`apply_decisions()`: a person's review of a clean run (decisions.csv, see `decisions`) applied on top of the
run's own decisions, written as a new manifest that `labelscrub retrain` trains on like a clean run's.

The start is the run's manifest: its kept readable samples under their given labels and, with `clean --relabel`,
its dropped samples that have a suggested label, under that label. Then each decision: keep puts the sample in under
its given label, drop takes it out, relabel puts it in under the named class.

Outputs in OUT (default RUN_DIR/applied), written together or not at all, and only once every check has passed:
- manifest.<format>: as `clean` writes it (manifest.py), from the run's input DATA (the report's `data`);
- decisions.json: `source_run` (the run folder, absolute), `decisions_file`, `manifest`, `counts` (kept, dropped,
  relabelled by the review; manifest_samples) and `decisions` (per row: line, sample_id, decision, and label: the
  class the sample has in the manifest, null when dropped). `retrain` finds the source run's report through it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from labelscrub.atomic import outputs_together, write_text
from labelscrub.config import CleanConfig
from labelscrub.decisions import Decision, read_decisions
from labelscrub.errors import LabelscrubError
from labelscrub.manifest import REVIEW_RECORD, manifest_format_for, remove_other_manifests, write_manifest
from labelscrub.outfolder import prepare_out_dir
from labelscrub.report import read_report_metadata
from labelscrub.sources import LabeledImages, open_data
from labelscrub.version import __version__

DEFAULT_OUT = "applied"  # inside the run folder, beside the run's own manifest


@dataclass
class AppliedResult:
    out_dir: Path
    manifest_path: Path
    record_path: Path  # decisions.json
    counts: dict[str, int]  # kept, dropped, relabelled (by the review), manifest_samples


@dataclass
class _Run:
    """What apply needs from a clean run's report: one entry per report row."""

    sample_ids: list[str]
    labels: np.ndarray  # given class index, -1 where the sample has none
    dropped: np.ndarray
    suggested: np.ndarray  # suggested class index, -1 where none
    confidence: np.ndarray  # float32 confidence of the suggestion, NaN where none
    problems: list[str | None]  # why the sample cannot be in a manifest; None where it can
    metadata: dict[str, Any]  # the report's `labelscrub` metadata: data, config, class_names, ...


def apply_decisions(run_dir: str | Path, decisions: str | Path, *, out: str | Path | None = None,
                    overwrite: bool = False) -> AppliedResult:
    """Apply the review in `decisions` (decisions.csv) to the clean run in `run_dir` and write a new manifest and
    decisions.json into `out` (default RUN_DIR/applied).

    Example:
        result = labelscrub.apply_decisions("runs/digits", "decisions.csv")
        print(result.counts, result.manifest_path)
    """
    run_dir, decisions_path = Path(run_dir), Path(decisions)
    run = _read_run(run_dir)
    config, class_names = CleanConfig.from_dict(run.metadata["config"]), run.metadata["class_names"]
    chosen = read_decisions(decisions_path, sample_ids=run.sample_ids, labels=run.labels.tolist(),
                            class_names=class_names, problems=run.problems)
    in_manifest, labels = run_manifest(run.labels, run.dropped, run.suggested, run.confidence,
                                       usable=np.array([problem is None for problem in run.problems]),
                                       relabel=config.relabel, relabel_confidence=config.relabel_confidence)
    in_manifest, labels = with_decisions(in_manifest, labels, run.labels, chosen)

    data_path = Path(run.metadata["data"])
    images = _original_data(data_path, config, class_names)
    rows = _report_rows(images, run.sample_ids)  # per sample of the data, its report row
    manifest_format = manifest_format_for(images, config.manifest_format)
    out_dir = Path(out) if out is not None else run_dir / DEFAULT_OUT
    if out_dir.resolve() == run_dir.resolve():
        raise LabelscrubError(f"{out_dir}: is the run folder; apply never replaces the run's own manifest, choose "
                              "another --out")
    prepare_out_dir(out_dir, data_path, overwrite)

    by_word = Counter(decision.decision for decision in chosen)
    counts = {"kept": by_word["keep"], "dropped": by_word["drop"], "relabelled": by_word["relabel"],
              "manifest_samples": int(in_manifest.sum())}
    review = {"labelscrub_version": __version__, "source_run": str(run_dir.resolve()),
              "decisions_file": str(decisions_path.resolve()), "counts": counts}
    record_path = out_dir / REVIEW_RECORD
    with outputs_together():  # the manifest and its record appear together or not at all
        # A Parquet manifest carries the run's metadata, so it stays usable on its own, plus where it came from.
        manifest_path = write_manifest(images, in_manifest[rows], out_dir, manifest_format,
                                       {**run.metadata, "review": review}, labels=labels[rows])
        decided = [{"line": decision.line, "sample_id": decision.sample_id, "decision": decision.decision,
                    "label": class_names[labels[decision.row]] if in_manifest[decision.row] else None}
                   for decision in chosen]
        record = {**review, "manifest": str(manifest_path.resolve()), "decisions": decided}
        write_text(record_path, json.dumps(record, indent=2) + "\n")
    remove_other_manifests(out_dir, manifest_path)
    return AppliedResult(out_dir=out_dir, manifest_path=manifest_path, record_path=record_path, counts=counts)


def run_manifest(labels: np.ndarray, dropped: np.ndarray, suggested: np.ndarray, confidence: np.ndarray, *,
                 usable: np.ndarray, relabel: bool, relabel_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Which samples the clean run's manifest holds and under which class index, as `clean` wrote it: the kept
    usable samples under their given label and, with `relabel`, the dropped samples whose suggestion is at least
    `relabel_confidence` sure, under it."""
    sure = sure_suggestions(suggested, confidence, relabel_confidence)
    rescued = dropped & (sure >= 0) if relabel else np.zeros_like(dropped)
    return (~dropped & usable) | rescued, np.where(rescued, sure, labels)


def sure_suggestions(suggested: np.ndarray, confidence: np.ndarray, floor: float) -> np.ndarray:
    """The suggested class where the suggestion is at least `floor` sure, else -1."""
    # compared in float32, as the run stored the confidence, so the run, its report and apply agree to the bit
    sure = np.nan_to_num(np.asarray(confidence, np.float32), nan=-1.0) >= np.float32(floor)
    return np.where(sure & (suggested >= 0), suggested, -1)


def with_decisions(in_manifest: np.ndarray, labels: np.ndarray, given: np.ndarray,
                   decisions: list[Decision]) -> tuple[np.ndarray, np.ndarray]:
    """The manifest after the review: keep -> in under the given label, drop -> out, relabel -> in under the new
    class. The decisions are checked already (`read_decisions`)."""
    in_manifest, labels = in_manifest.copy(), labels.copy()
    for decision in decisions:
        in_manifest[decision.row] = decision.decision != "drop"
        if decision.decision == "keep":
            labels[decision.row] = given[decision.row]  # also undoes the run's relabel: the person confirmed it
        elif decision.decision == "relabel":
            labels[decision.row] = decision.label
    return in_manifest, labels


def source_report(folder: Path) -> Path | None:
    """For an apply output folder, the report of the clean run it came from; None for any other folder."""
    record = folder / REVIEW_RECORD
    if not record.exists():
        return None
    try:
        return Path(json.loads(record.read_text(encoding="utf-8"))["source_run"]) / "report.parquet"
    except (OSError, ValueError, KeyError, TypeError):
        raise LabelscrubError(f"{record}: cannot read the source run from it; run `labelscrub apply` again "
                              "with --overwrite") from None


def _read_run(run_dir: Path) -> _Run:
    report_path = run_dir / "report.parquet"
    if not report_path.exists():
        raise LabelscrubError(f"{run_dir}: no report.parquet here; pass the --out folder of `labelscrub clean`")
    metadata = read_report_metadata(report_path)
    if not {"data", "config", "class_names"} <= set(metadata):
        raise LabelscrubError(f"{report_path}: no labelscrub run metadata in it; pass the --out folder of "
                              "`labelscrub clean`")
    table = pq.read_table(report_path, columns=["sample_id", "label", "dropped", "suggested_label",
                                                "suggestion_confidence", "error"])
    labels = np.array(table.column("label").fill_null(-1).to_pylist(), dtype=np.int64)
    errors = table.column("error").to_pylist()
    return _Run(
        sample_ids=table.column("sample_id").to_pylist(), labels=labels,
        dropped=np.array(table.column("dropped").to_pylist(), dtype=bool),
        suggested=np.array(table.column("suggested_label").fill_null(-1).to_pylist(), dtype=np.int64),
        confidence=np.array(table.column("suggestion_confidence").fill_null(math.nan).to_pylist(), dtype=np.float32),
        problems=[error if error is not None else ("it has no label" if label < 0 else None)
                  for error, label in zip(errors, labels.tolist())],
        metadata=metadata)


def _original_data(data_path: Path, config: CleanConfig, class_names: list[str]) -> LabeledImages:
    if not data_path.exists():
        raise LabelscrubError(f"{data_path}: the run's input is not found; apply copies the manifest's samples from "
                              "it, so restore it at that path")
    images = open_data(data_path, image_column=config.image_column, label_column=config.label_column,
                       id_column=config.id_column, allow_outside_root=config.allow_outside_root).train
    if images.class_names != class_names:
        raise LabelscrubError(f"{data_path}: its classes differ from the run's; the input changed after the run, "
                              "clean it again")
    return images


def _report_rows(images: LabeledImages, sample_ids: list[str]) -> np.ndarray:
    """Per sample of the data, its row in the report (matched by id), refused when the samples differ."""
    row_of = {sample_id: row for row, sample_id in enumerate(sample_ids)}
    rows = np.array([row_of.get(sample_id, -1) for sample_id in images.sample_ids], dtype=np.int64)
    if len(images) != len(sample_ids) or (rows < 0).any():
        missing = len(set(sample_ids) - set(images.sample_ids))
        raise LabelscrubError(f"{images.location}: the input changed after the run ({int((rows < 0).sum())} samples "
                              f"not in the report, {missing} of the report's missing); clean it again")
    return rows
