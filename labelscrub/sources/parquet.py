"""Parquet datasets: one `.parquet` file, or a folder of them (searched recursively).

- Image column: encoded bytes (binary), the Hugging Face Image struct `{bytes, path}`, or a string path relative to
  the Parquet file. Found by name (`image`, `img`), else the single binary/struct column, else a `path` column;
  `image_column` overrides.
- Label column: `label`, `labels`, `target` or `class` (or `label_column`); ints or strings. Int labels with a
  Hugging Face ClassLabel in the `huggingface` schema metadata take its names; other ints keep their value as index.
- Split layout: in a folder whose file names all start with a split name (`train-00000-of-00002.parquet`,
  `test.parquet`), the train files are cleaned and val/valid/validation (else test) files are held out.
- Sample ids: the id column when given, else `<file relative to DATA>:<row>`.
Only the label and id columns are read whole; images stream by record batch, so memory does not grow with the data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from labelscrub.errors import LabelscrubError
from labelscrub.sources.base import (
    HELDOUT_SPLITS,
    TRAIN_SPLIT,
    EncodedStream,
    LabeledImages,
    ParquetRows,
    SplitData,
    align_classes,
    read_file_bytes,
    sorted_class_names,
)

IMAGE_COLUMN_NAMES = ("image", "img")
LABEL_COLUMN_NAMES = ("label", "labels", "target", "class")
PATH_COLUMN = "path"  # image paths, when no column holds the images themselves
# Rows decoded per read: large enough to amortise Parquet overhead, small enough that big images stay in budget.
STREAM_BATCH_ROWS = 256
# A file of a split layout: its name starts with one of the split names image folders use.
_SPLIT_NAMES = "|".join(map(re.escape, (TRAIN_SPLIT, *HELDOUT_SPLITS)))
_SPLIT_FILE = re.compile(rf"^({_SPLIT_NAMES})(?:[-_.].*)?\.parquet$", re.IGNORECASE)


def parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet")
                   if not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise LabelscrubError(f"{path}: no .parquet files found in the folder")
    return files


def read_parquet(path: Path, *, image_column: str | None = None, label_column: str | None = None,
                 id_column: str | None = None) -> SplitData:
    files = parquet_files(path)
    root = path if path.is_dir() else path.parent
    options = dict(root=root, image_column=image_column, label_column=label_column, id_column=id_column)
    splits: dict[str, list[Path]] = {}
    for file in files:
        match = _SPLIT_FILE.match(file.name)
        splits.setdefault(match.group(1).lower() if match else "", []).append(file)
    if path.is_dir() and TRAIN_SPLIT in splits and "" not in splits:
        train = _read_files(splits[TRAIN_SPLIT], **options)
        heldout_name = next((name for name in HELDOUT_SPLITS if name in splits), None)
        heldout = None
        if heldout_name is not None:
            heldout = _read_files(splits[heldout_name], class_names=train.class_names, **options)
            heldout = align_classes(heldout, train.class_names)
        return SplitData(train=train, heldout=heldout)
    return SplitData(train=_read_files(files, **options))


def _read_files(files: list[Path], *, root: Path, image_column: str | None, label_column: str | None,
                id_column: str | None, class_names: list[str] | None = None) -> LabeledImages:
    schema = _open(files[0]).schema_arrow
    image_col = _find_image_column(files[0], schema, image_column)
    label_col = _find_label_column(files[0], schema, label_column)
    if id_column is not None:
        _require_column(files[0], schema, id_column, "--id-column")
    raw_labels: list[pa.ChunkedArray] = []
    sample_ids: list[str] = []
    file_index: list[np.ndarray] = []
    row_index: list[np.ndarray] = []
    for number, file in enumerate(files):
        parquet_file = _open(file)
        file_schema = parquet_file.schema_arrow
        for column in (image_col, label_col, id_column):
            if column is not None and column not in file_schema.names:
                raise LabelscrubError(f"{file}: column {column!r} is missing (it is in {files[0].name}); "
                                      "all Parquet files of a dataset need the same columns")
        columns = [label_col] + ([id_column] if id_column else [])
        table = parquet_file.read(columns=columns)
        column = table.column(label_col)
        if raw_labels and column.type != raw_labels[0].type:
            # Files written by different tools store the same labels as int32 vs int64 (or string vs large_string);
            # Arrow refuses to join chunks of different types.
            try:
                column = column.cast(raw_labels[0].type)
            except pa.ArrowException:
                raise LabelscrubError(f"{file}: label column {label_col!r} has type {column.type} but it is "
                                      f"{raw_labels[0].type} in {files[0].name}; all Parquet files of a dataset "
                                      "need the same label type") from None
        raw_labels.append(column)
        rows = table.num_rows
        if id_column:
            sample_ids.extend(str(value) for value in table.column(id_column).to_pylist())
        else:
            name = file.relative_to(root).as_posix()
            sample_ids.extend(f"{name}:{row}" for row in range(rows))
        file_index.append(np.full(rows, number, dtype=np.int32))
        row_index.append(np.arange(rows, dtype=np.int64))
    if not sample_ids:
        raise LabelscrubError(f"{files[0]}: the Parquet data has no rows; nothing to clean")
    if len(set(sample_ids)) != len(sample_ids):
        raise LabelscrubError(f"{files[0]}: the id column {id_column!r} has repeated values; ids must be unique")
    labels_column = pa.chunked_array([chunk for array in raw_labels for chunk in array.chunks],
                                     type=raw_labels[0].type)
    labels, names, errors = _labels(labels_column, files[0], label_col, schema, class_names)
    locations = ParquetRows(files=files, file_index=np.concatenate(file_index), row_index=np.concatenate(row_index),
                            label_column=label_col, image_column=image_col)
    return LabeledImages(
        kind="parquet", location=files[0] if len(files) == 1 else root, sample_ids=sample_ids, labels=labels,
        class_names=names, errors=errors, parquet=locations,
        iter_encoded=lambda: _iter_images(files, image_col))


def _open(file: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(file)
    except (OSError, pa.ArrowException) as error:
        raise LabelscrubError(
            f"{file}: not a readable Parquet file ({error}); check the file or re-export it") from None


def _find_image_column(file: Path, schema: pa.Schema, requested: str | None) -> str:
    if requested is not None:
        return _require_column(file, schema, requested, "--image-column")
    for name in IMAGE_COLUMN_NAMES:
        if name in schema.names:
            return name
    image_like = [f.name for f in schema if _is_binary(f.type) or _is_image_struct(f.type)]
    if len(image_like) == 1:
        return image_like[0]
    if not image_like and PATH_COLUMN in schema.names:  # a path,label manifest written as Parquet
        return PATH_COLUMN
    raise LabelscrubError(f"{file}: cannot tell which column holds the images (columns: {', '.join(schema.names)}); "
                          "name it with --image-column")


def _find_label_column(file: Path, schema: pa.Schema, requested: str | None) -> str:
    if requested is not None:
        return _require_column(file, schema, requested, "--label-column")
    for name in LABEL_COLUMN_NAMES:
        if name in schema.names:
            return name
    raise LabelscrubError(f"{file}: no label column ({'/'.join(LABEL_COLUMN_NAMES)}) among {', '.join(schema.names)}; "
                          "name it with --label-column")


def _require_column(file: Path, schema: pa.Schema, name: str, option: str) -> str:
    if name not in schema.names:
        raise LabelscrubError(f"{file}: no column {name!r} for {option}; columns are {', '.join(schema.names)}")
    return name


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _is_image_struct(kind: pa.DataType) -> bool:
    return pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0


def _classlabel_names(schema: pa.Schema, label_col: str) -> list[str] | None:
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    try:
        feature = json.loads(raw)["info"]["features"][label_col]
    except (ValueError, KeyError, TypeError):
        return None
    names = feature.get("names") if isinstance(feature, dict) else None
    return [str(name) for name in names] if isinstance(names, list) else None


def _labels(column: pa.ChunkedArray, file: Path, label_col: str, schema: pa.Schema,
            known_names: list[str] | None) -> tuple[np.ndarray, list[str], list[str | None]]:
    values = column.to_pylist()
    errors: list[str | None] = [None if value is not None else f"row has no label (null in column {label_col!r})"
                                for value in values]
    kind = column.type
    if pa.types.is_integer(kind):
        names = _classlabel_names(schema, label_col)
        present = [value for value in values if value is not None]
        if names is None:
            largest = max(present, default=-1)
            names = [str(index) for index in range(largest + 1)]
        labels = np.array([-1 if value is None else value for value in values], dtype=np.int64)
        for row, value in enumerate(values):
            if value is not None and not 0 <= value < len(names):
                labels[row] = -1
                errors[row] = f"label {value} is outside the {len(names)} classes"
        return labels, names, errors
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        names = list(known_names) if known_names else sorted_class_names({str(v) for v in values if v is not None})
        index_of = {name: index for index, name in enumerate(names)}
        labels = np.array([-1 if value is None else index_of.get(str(value), -1) for value in values], dtype=np.int64)
        if known_names:
            # Held-out files may name classes the training files lack; align_classes reports them by name.
            extra = sorted({str(v) for v in values if v is not None} - set(index_of))
            if extra:
                raise LabelscrubError(
                    f"{file}: held-out classes {', '.join(extra[:5])} do not occur in the training data")
        return labels, names, errors
    raise LabelscrubError(f"{file}: label column {label_col!r} has type {kind}; labels must be integers or strings")


def _iter_images(files: list[Path], image_col: str) -> EncodedStream:
    index = 0
    for file in files:
        parquet_file = _open(file)
        column_type = parquet_file.schema_arrow.field(image_col).type
        if not (_is_binary(column_type) or _is_image_struct(column_type)
                or pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
            raise LabelscrubError(f"{file}: image column {image_col!r} has type {column_type}; expected encoded bytes, "
                                  "a {bytes, path} struct or a path string")
        for batch in parquet_file.iter_batches(batch_size=STREAM_BATCH_ROWS, columns=[image_col]):
            for value in batch.column(0).to_pylist():
                yield (index, *encoded_value(value, file))
                index += 1


def encoded_value(value: object, file: Path) -> tuple[bytes | None, str | None]:
    """(encoded image bytes, None) of one image-column value (bytes, a {bytes, path} struct or a path relative to
    `file`), or (None, why not)."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"], None
        value = value.get("path")
        if not value:
            return None, "image is empty (neither bytes nor path)"
    if isinstance(value, bytes | bytearray):
        return (bytes(value), None) if value else (None, "image bytes are empty")
    if isinstance(value, str):
        path = Path(value)
        return read_file_bytes(path if path.is_absolute() else file.parent / path)
    return None, "image is null"
