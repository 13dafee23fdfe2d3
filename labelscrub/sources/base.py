"""What every data source produces: `LabeledImages`, a list of samples with stable ids, labels and a way to stream
their encoded image bytes.

Labels are class indices into `class_names`; -1 marks a sample without a usable label (its `errors` entry says why).
Images are not decoded here: `iter_encoded()` yields `(index, encoded bytes or None, error or None)` in sample order,
reading the source piece by piece (files one at a time, Parquet by record batch) so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelscrub.errors import LabelscrubError

EncodedStream = Iterator[tuple[int, "bytes | None", "str | None"]]

# Folder names that mark a split layout, in the order a held-out split is preferred.
TRAIN_SPLIT = "train"
HELDOUT_SPLITS = ("val", "valid", "validation", "test")


@dataclass
class ParquetRows:
    """Where each sample lives in a Parquet input, so the manifest can copy the original rows."""

    files: list[Path]
    file_index: np.ndarray  # int32, one per sample: index into `files`
    row_index: np.ndarray  # int64, one per sample: row within that file
    label_column: str = "label"  # the column the labels came from (rewritten by `clean --relabel`)
    image_column: str | None = None  # the column the images came from (read again for the audit's thumbnails)


@dataclass
class LabeledImages:
    kind: str  # "folder", "parquet" or "labels" (a CSV/JSONL label file)
    location: Path  # the file or folder the samples were read from
    sample_ids: list[str]
    labels: np.ndarray  # int64 class index per sample, -1 = no usable label
    class_names: list[str]
    iter_encoded: Callable[[], EncodedStream] = field(repr=False)
    errors: list[str | None] = field(default_factory=list)  # read-time problems per sample (None = fine)
    paths: list[Path] | None = None  # absolute image path per sample when images are files
    parquet: ParquetRows | None = None  # set for Parquet inputs
    notes: list[str] = field(default_factory=list)  # things skipped on purpose, shown in the summary and run.json

    def __post_init__(self) -> None:
        if not self.errors:
            self.errors = [None] * len(self.sample_ids)

    def __len__(self) -> int:
        return len(self.sample_ids)


@dataclass
class SplitData:
    """The samples to clean and, when the input has one, the held-out samples to measure accuracy on."""

    train: LabeledImages
    heldout: LabeledImages | None = None


def printable(text: str) -> str:
    """`text` safe to write as UTF-8: bytes of a non-UTF-8 file name (kept by Python as surrogates) become \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_file_bytes(path: Path) -> tuple[bytes | None, str | None]:
    """The bytes of one image file, or the reason it cannot be read (never raises for a single bad file)."""
    try:
        return path.read_bytes(), None
    except OSError as error:
        return None, f"cannot read {path}: {error.strerror or error}"


def iter_file_bytes(paths: list[Path], errors: list[str | None]) -> EncodedStream:
    for index, path in enumerate(paths):
        if errors[index] is not None:
            yield index, None, errors[index]
            continue
        data, error = read_file_bytes(path)
        yield index, data, error


def sorted_class_names(names: set[str]) -> list[str]:
    """Class names in index order: numeric names sort as numbers ("2" before "10"), anything else by name."""
    # isdecimal, not isdigit: int() rejects digits such as "²". The name breaks ties ("1" vs "01"), else their order
    # would follow the set's per-process string hashing and class indices would change between runs.
    if names and all(name.lstrip("-").isdecimal() for name in names):
        return sorted(names, key=lambda name: (int(name), name))
    return sorted(names)


def align_classes(heldout: LabeledImages, class_names: list[str]) -> LabeledImages:
    """Re-index `heldout` labels onto the training classes, by name."""
    index_of = {name: index for index, name in enumerate(class_names)}
    unknown = sorted({heldout.class_names[label] for label in heldout.labels if label >= 0} - set(index_of))
    if unknown:
        raise LabelscrubError(
            f"{heldout.location}: held-out classes {', '.join(unknown[:5])} do not occur in the training data; "
            "held-out data must use the training class names")
    heldout.labels = np.array(
        [index_of[heldout.class_names[label]] if label >= 0 else -1 for label in heldout.labels], dtype=np.int64)
    heldout.class_names = list(class_names)
    return heldout
