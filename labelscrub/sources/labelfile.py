"""CSV and JSONL label files: one sample per row with an image path and a label (the manifest format labelscrub
writes, so a cleaned manifest can be cleaned again or retrained on).

- CSV needs a header; JSONL is one JSON object per line. The path column is `path` (or `file`, `filename`,
  `file_name`, `image`); the label column is `label` (or `labels`, `class`, `target`). Labels are class names.
- Paths are relative to the label file's folder, or absolute. A relative path that leaves the folder (`../x.jpg`)
  is refused unless `allow_outside_root`. The sample id is the path as written in the file.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from labelscrub.errors import LabelscrubError
from labelscrub.sources.base import LabeledImages, SplitData, iter_file_bytes, sorted_class_names

PATH_KEYS = ("path", "file", "filename", "file_name", "image")
LABEL_KEYS = ("label", "labels", "class", "target")
LABEL_FILE_SUFFIXES = {".csv", ".jsonl", ".ndjson"}


def read_label_file(path: Path, *, allow_outside_root: bool = False) -> SplitData:
    rows = _read_jsonl(path) if path.suffix.lower() in {".jsonl", ".ndjson"} else _read_csv(path)
    if not rows:
        raise LabelscrubError(f"{path}: the label file lists no samples")
    folder = path.parent.resolve()
    sample_ids = [image for image, _, _ in rows]
    class_names = sorted_class_names({label for _, label, _ in rows})
    index_of = {name: index for index, name in enumerate(class_names)}
    labels = np.array([index_of[label] for _, label, _ in rows], dtype=np.int64)
    paths = [Path(image) if Path(image).is_absolute() else folder / image for image in sample_ids]
    for (image, _, line), resolved in zip(rows, paths):
        # A relative path that climbs out of the label file's folder is how a shared manifest reads files it was
        # never meant to; absolute paths are explicit and allowed (labelscrub's own manifests use them).
        if not allow_outside_root and not Path(image).is_absolute() and \
                not os.path.normpath(resolved).startswith(str(folder) + os.sep):
            raise LabelscrubError(f"{path}:{line}: path {image!r} points outside {folder}; pass "
                                  "--allow-outside-root if that is intended")
    errors: list[str | None] = [None] * len(rows)
    seen: dict[str, int] = {}
    for number, image in enumerate(sample_ids):
        if image in seen:
            line = rows[number][2]
            first = rows[seen[image]][2]
            raise LabelscrubError(f"{path}:{line}: path {image!r} is listed twice (first on line {first}); "
                                  "each image may appear once")
        seen[image] = number
    return SplitData(train=LabeledImages(
        kind="labels", location=path, sample_ids=sample_ids, labels=labels, class_names=class_names, paths=paths,
        errors=errors, iter_encoded=lambda: iter_file_bytes(paths, errors)))


def _pick(keys: list[str], wanted: tuple[str, ...], path: Path, what: str) -> str:
    lowered = {key.strip().lower(): key for key in keys}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    raise LabelscrubError(f"{path}: no {what} column ({'/'.join(wanted)}) in the header {', '.join(keys)}; "
                          "the file needs a header row such as path,label")


def _read_csv(path: Path) -> list[tuple[str, str, int]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            path_key = _pick(header, PATH_KEYS, path, "path")
            label_key = _pick(header, LABEL_KEYS, path, "label")
            rows = []
            for record in reader:
                line = reader.line_num
                image, label = record.get(path_key), record.get(label_key)
                if None in record or not image or label is None or label.strip() == "":
                    raise LabelscrubError(f"{path}:{line}: malformed row (expected {path_key},{label_key}); "
                                          "fix or remove the line")
                rows.append((image.strip(), label.strip(), line))
            return rows
    except UnicodeDecodeError as error:
        raise LabelscrubError(f"{path}: not UTF-8 text ({error.reason}); save the file as UTF-8") from None
    except OSError as error:
        raise LabelscrubError(f"{path}: cannot read the label file ({error.strerror or error})") from None


def _read_jsonl(path: Path) -> list[tuple[str, str, int]]:
    rows = []
    try:
        # utf-8-sig: Windows tools often start the file with a BOM, which json.loads rejects.
        with path.open(encoding="utf-8-sig") as handle:
            path_key = label_key = None
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as error:
                    raise LabelscrubError(
                        f"{path}:{line}: not valid JSON ({error.msg}); fix or remove the line") from None
                if not isinstance(record, dict):
                    raise LabelscrubError(f"{path}:{line}: expected a JSON object with path and label keys")
                if path_key is None:
                    path_key = _pick(list(record), PATH_KEYS, path, "path")
                    label_key = _pick(list(record), LABEL_KEYS, path, "label")
                image, label = record.get(path_key), record.get(label_key)
                if not isinstance(image, str) or not image or label is None or isinstance(label, dict | list):
                    raise LabelscrubError(f"{path}:{line}: malformed record (needs a {path_key!r} string and a "
                                          f"{label_key!r} value); fix or remove the line")
                rows.append((image, str(label), line))
    except UnicodeDecodeError as error:
        raise LabelscrubError(f"{path}: not UTF-8 text ({error.reason}); save the file as UTF-8") from None
    except OSError as error:
        raise LabelscrubError(f"{path}: cannot read the label file ({error.strerror or error})") from None
    return rows
