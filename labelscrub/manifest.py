"""The cleaned manifest: the kept samples, in a form both `labelscrub clean` and other pipelines read.

- Image folders and label files: `manifest.csv` (or .jsonl / .parquet) with `path,label`: absolute image paths
  and class names, so the file works wherever it is moved.
- Parquet inputs: `manifest.parquet`, the input's rows with the same schema and schema metadata (Hugging Face
  ClassLabel names included), dropped and unreadable rows removed; copied batch by batch, never loaded whole.

With `clean --relabel` some kept samples carry a suggested label instead of their given one; the manifest writes
that label (in a Parquet copy, in the original label column and its type: class index or class name).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from labelscrub.atomic import atomic_path
from labelscrub.config import MANIFEST_FORMATS
from labelscrub.errors import LabelscrubError
from labelscrub.report import METADATA_KEY
from labelscrub.sources import LabeledImages

COPY_BATCH_ROWS = 1024  # Parquet rows copied at a time
MANIFEST_NAMES = tuple(f"manifest.{fmt}" for fmt in MANIFEST_FORMATS)  # retrain looks for them in this order
REVIEW_RECORD = "decisions.json"  # what `apply` writes beside the manifest of a person's decisions
RUN_RECORDS = ("run.json", REVIEW_RECORD)  # what `clean` or `apply` leaves beside a CSV or JSONL manifest it wrote


def cleaned_again_note(data: Path) -> str | None:
    """A note for the summary when DATA is a manifest labelscrub wrote, else None.

    Cleaning such a set again reads it as nearly clean: the wrong labels the first run kept are ones its network
    believed, and a second network believes them too (cleaning again the manifest of CIFAR-10N `worst`, 20% of its
    labels still wrong, estimated 0%: BENCHMARKS.md, "What was tried and rejected"). A Parquet manifest carries its
    run's `labelscrub` metadata wherever it is moved; a CSV or JSONL one is known by its name beside the record of
    the `clean` or `apply` that wrote it."""
    if not data.is_file():
        return None
    if data.suffix.lower() == ".parquet":
        try:
            written = METADATA_KEY in (pq.read_schema(data).metadata or {})
        except (OSError, pa.ArrowException):  # not readable as Parquet: the reader says so, naming the file
            written = False
    else:
        written = data.name in MANIFEST_NAMES and any((data.parent / record).exists() for record in RUN_RECORDS)
    if not written:
        return None
    return (f"{data} is a manifest labelscrub wrote: the wrong labels it still holds are ones the first run's network "
            "believed, and this run's estimate cannot count them either; read it as a lower bound")


def manifest_format_for(images: LabeledImages, requested: str | None) -> str:
    if images.kind == "parquet":
        if requested not in (None, "parquet"):
            raise LabelscrubError(f"--manifest-format {requested} needs image files; a Parquet input's images live "
                                  "inside the file, so its manifest is always manifest.parquet")
        return "parquet"
    return requested or "csv"


def write_manifest(images: LabeledImages, keep: np.ndarray, out_dir: Path, fmt: str,
                   metadata: dict[str, Any], labels: np.ndarray | None = None) -> Path:
    """Write the kept samples of `images` into `out_dir` and return the manifest's path. `labels` (class indices,
    one per sample) replaces the given labels where it differs from them."""
    target = out_dir / f"manifest.{fmt}"
    labels = images.labels if labels is None else labels
    if images.kind == "parquet":
        _copy_parquet_rows(images, keep, labels, target, metadata)
        return target
    assert images.paths is not None
    rows = [(str(path), images.class_names[label])
            for path, label, ok in zip(images.paths, labels.tolist(), keep.tolist()) if ok]
    with atomic_path(target) as temporary:
        if fmt == "csv":
            with temporary.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path", "label"])
                writer.writerows(rows)
        elif fmt == "jsonl":
            with temporary.open("w", encoding="utf-8") as handle:
                for path, label in rows:
                    handle.write(json.dumps({"path": path, "label": label}) + "\n")
        else:
            table = pa.table({"path": [path for path, _ in rows], "label": [label for _, label in rows]})
            table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
            pq.write_table(table, temporary)
    return target


def remove_other_manifests(out_dir: Path, written: Path) -> None:
    """A manifest of another format, left by the output this one overwrote, would be mistaken for this one's."""
    for name in MANIFEST_NAMES:
        if out_dir / name != written:
            (out_dir / name).unlink(missing_ok=True)


def _copy_parquet_rows(images: LabeledImages, keep: np.ndarray, labels: np.ndarray, target: Path,
                       metadata: dict[str, Any]) -> None:
    locations = images.parquet
    assert locations is not None
    relabelled = keep & (labels != images.labels)
    first_schema = pq.read_schema(locations.files[0])
    schema = first_schema.with_metadata({**(first_schema.metadata or {}),
                                         METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    with atomic_path(target) as temporary, pq.ParquetWriter(temporary, schema) as writer:
        for number, file in enumerate(locations.files):
            in_file = locations.file_index == number
            kept_rows = np.zeros(int(in_file.sum()), dtype=bool)
            kept_rows[locations.row_index[in_file]] = keep[in_file]
            new_label = np.full(int(in_file.sum()), -1, dtype=np.int64)  # -1: keep the row's own label
            new_label[locations.row_index[in_file]] = np.where(relabelled[in_file], labels[in_file], -1)
            start = 0
            for batch in pq.ParquetFile(file).iter_batches(batch_size=COPY_BATCH_ROWS):
                mask = kept_rows[start:start + batch.num_rows]
                replaced = new_label[start:start + batch.num_rows]
                start += batch.num_rows
                if mask.any():
                    table = pa.Table.from_batches([batch])
                    if (replaced >= 0).any():
                        table = _relabel(table, replaced, locations.label_column, images.class_names)
                    writer.write_table(table.filter(pa.array(mask)).cast(schema))


def _relabel(table: pa.Table, replaced: np.ndarray, column: str, class_names: list[str]) -> pa.Table:
    """`table` with the label of every row where `replaced` >= 0 set to that class, in the column's own type."""
    position = table.schema.get_field_index(column)
    kind = table.schema.field(column).type
    values = table.column(column).to_pylist()
    for row in np.flatnonzero(replaced >= 0).tolist():
        values[row] = int(replaced[row]) if pa.types.is_integer(kind) else class_names[replaced[row]]
    if pa.types.is_dictionary(kind):  # rebuilt as plain strings, then cast back to the dictionary type
        return table.set_column(position, column, pa.array(values, pa.string()).cast(kind))
    return table.set_column(position, column, pa.array(values, kind))
