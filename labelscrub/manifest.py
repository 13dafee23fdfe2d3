"""The cleaned manifest: the kept samples, in a form both `labelscrub clean` and other pipelines read.

- Image folders and label files: `manifest.csv` (or .jsonl / .parquet) with `path,label`: absolute image paths
  and class names, so the file works wherever it is moved.
- Parquet inputs: `manifest.parquet`, the input's rows with the same schema and schema metadata (Hugging Face
  ClassLabel names included), dropped and unreadable rows removed; copied batch by batch, never loaded whole.
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
from labelscrub.errors import LabelscrubError
from labelscrub.report import METADATA_KEY
from labelscrub.sources import LabeledImages

COPY_BATCH_ROWS = 1024  # Parquet rows copied at a time


def manifest_format_for(images: LabeledImages, requested: str | None) -> str:
    if images.kind == "parquet":
        if requested not in (None, "parquet"):
            raise LabelscrubError(f"--manifest-format {requested} needs image files; a Parquet input's images live "
                                  "inside the file, so its manifest is always manifest.parquet")
        return "parquet"
    return requested or "csv"


def write_manifest(images: LabeledImages, keep: np.ndarray, out_dir: Path, fmt: str,
                   metadata: dict[str, Any]) -> Path:
    """Write the kept samples of `images` into `out_dir` and return the manifest's path."""
    target = out_dir / f"manifest.{fmt}"
    if images.kind == "parquet":
        _copy_parquet_rows(images, keep, target, metadata)
        return target
    assert images.paths is not None
    rows = [(str(path), images.class_names[label])
            for path, label, ok in zip(images.paths, images.labels.tolist(), keep.tolist()) if ok]
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


def _copy_parquet_rows(images: LabeledImages, keep: np.ndarray, target: Path, metadata: dict[str, Any]) -> None:
    locations = images.parquet
    assert locations is not None
    first_schema = pq.read_schema(locations.files[0])
    schema = first_schema.with_metadata({**(first_schema.metadata or {}),
                                         METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    with atomic_path(target) as temporary:
        with pq.ParquetWriter(temporary, schema) as writer:
            for number, file in enumerate(locations.files):
                in_file = locations.file_index == number
                kept_rows = np.zeros(int(in_file.sum()), dtype=bool)
                kept_rows[locations.row_index[in_file]] = keep[in_file]
                start = 0
                for batch in pq.ParquetFile(file).iter_batches(batch_size=COPY_BATCH_ROWS):
                    mask = kept_rows[start:start + batch.num_rows]
                    start += batch.num_rows
                    if mask.any():
                        table = pa.Table.from_batches([batch]).filter(pa.array(mask))
                        writer.write_table(table.cast(schema))
