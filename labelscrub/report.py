"""report.parquet: one row per training sample, with its loss trajectory and drop status.

Columns (see README "Outputs"): sample_id, label, label_name, predicted, predicted_name, p_label, loss,
loss_trajectory (list<float32>, one value per epoch), dropped, first_dropped_epoch, epochs_dropped, score,
confused_with (the class a confused label came from, confusion.py), suggested_label, suggested_name,
suggestion_confidence (suggest.py; null where the model is not confident), error.
The schema metadata key `labelscrub` holds JSON with the version, resolved configuration, class names, the rho
schedule and per-epoch summaries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from labelscrub.atomic import atomic_path
from labelscrub.sources import LabeledImages

METADATA_KEY = b"labelscrub"

REPORT_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("label", pa.int64()),
    ("label_name", pa.string()),
    ("predicted", pa.int64()),
    ("predicted_name", pa.string()),
    ("p_label", pa.float32()),
    ("loss", pa.float32()),
    ("loss_trajectory", pa.list_(pa.float32())),
    ("dropped", pa.bool_()),
    ("first_dropped_epoch", pa.int32()),
    ("epochs_dropped", pa.int32()),
    ("score", pa.float32()),
    ("confused_with", pa.string()),
    ("suggested_label", pa.int64()),
    ("suggested_name", pa.string()),
    ("suggestion_confidence", pa.float32()),
    ("error", pa.string()),
])


class Measured(Protocol):
    """The per-sample results of training the report shows (methods.TrainingOutcome is one); N samples."""

    loss_history: np.ndarray  # (epochs, N) float32 measured losses
    kept_history: np.ndarray  # (epochs, N) bool: in that epoch's batches
    predicted: np.ndarray  # (N,) int64
    p_label: np.ndarray  # (N,) float32
    final_loss: np.ndarray  # (N,) float32
    score: np.ndarray  # (N,) float32
    suggested: np.ndarray  # (N,) int64, -1 = none
    suggestion_confidence: np.ndarray  # (N,) float32


def build_report(images: LabeledImages, measured: Measured, *, dropped: np.ndarray, confused_with: np.ndarray,
                 errors: list[str | None], metadata: dict[str, Any]) -> pa.Table:
    """Assemble the report table of the training samples `images`. Unreadable samples (error set) get nulls for
    everything measured; `confused_with` is -1 for samples not left out as confused."""
    labels, class_names = images.labels, images.class_names
    predicted, suggested = measured.predicted, measured.suggested
    kept_history = measured.kept_history
    readable = np.array([error is None for error in errors], dtype=bool)
    excluded = ~kept_history & readable[None, :]  # (epochs, N): left out of that epoch's updates
    first_dropped = np.where(excluded.any(axis=0), excluded.argmax(axis=0), -1)

    def masked(values: np.ndarray, kind: pa.DataType) -> pa.Array:
        return pa.array(values, type=kind, mask=~readable)

    def names(indices: np.ndarray, valid: np.ndarray) -> list[str | None]:
        return [class_names[index] if ok else None for index, ok in zip(indices.tolist(), valid.tolist())]

    has_label = labels >= 0
    trajectory_column = pa.array(
        [row if ok else None for row, ok in zip(measured.loss_history.T.tolist(), readable.tolist())],
        type=pa.list_(pa.float32()))
    columns = {
        "sample_id": pa.array(images.sample_ids, pa.string()),
        "label": pa.array(labels, pa.int64(), mask=~has_label),
        "label_name": pa.array(names(labels, has_label), pa.string()),
        "predicted": masked(predicted, pa.int64()),
        "predicted_name": pa.array(names(predicted, readable), pa.string()),
        "p_label": masked(measured.p_label.astype(np.float32), pa.float32()),
        "loss": masked(measured.final_loss.astype(np.float32), pa.float32()),
        "loss_trajectory": trajectory_column,
        "dropped": pa.array(dropped & readable, pa.bool_()),
        "first_dropped_epoch": pa.array(first_dropped, pa.int32(), mask=first_dropped < 0),
        "epochs_dropped": pa.array(excluded.sum(axis=0), pa.int32()),
        "score": masked(measured.score.astype(np.float32), pa.float32()),
        "confused_with": pa.array(names(confused_with, readable & (confused_with >= 0)), pa.string()),
        "suggested_label": pa.array(suggested, pa.int64(), mask=~(readable & (suggested >= 0))),
        "suggested_name": pa.array(names(suggested, readable & (suggested >= 0)), pa.string()),
        "suggestion_confidence": pa.array(measured.suggestion_confidence.astype(np.float32), pa.float32(),
                                          mask=~(readable & (suggested >= 0))),
        "error": pa.array(errors, pa.string()),
    }
    schema = REPORT_SCHEMA.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    return pa.Table.from_pydict(columns, schema=schema)


def write_report(table: pa.Table, target: Path) -> None:
    with atomic_path(target) as temporary:
        pq.write_table(table, temporary)


def read_report_metadata(path: Path) -> dict[str, Any]:
    """The `labelscrub` metadata of a report (or of any labelscrub-written Parquet file)."""
    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
