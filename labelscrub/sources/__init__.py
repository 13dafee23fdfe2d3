"""Reading the user's data: picks the reader for DATA (image folder, Parquet file or folder, CSV/JSONL label file)
and returns the samples to clean plus any held-out samples. See `base.LabeledImages` for the common form."""

from __future__ import annotations

from pathlib import Path

from labelscrub.errors import LabelscrubError
from labelscrub.sources.base import LabeledImages, ParquetRows, SplitData, align_classes
from labelscrub.sources.folder import read_image_folder
from labelscrub.sources.labelfile import LABEL_FILE_SUFFIXES, read_label_file
from labelscrub.sources.parquet import read_parquet

__all__ = ["LabeledImages", "ParquetRows", "SplitData", "open_data", "read_heldout"]


def open_data(data: str | Path, *, image_column: str | None = None, label_column: str | None = None,
              id_column: str | None = None, allow_outside_root: bool = False) -> SplitData:
    path = Path(data)
    if not path.exists():
        raise LabelscrubError(f"{path}: no such file or folder; pass an image folder, a Parquet file/folder or a "
                              "CSV/JSONL label file")
    columns = dict(image_column=image_column, label_column=label_column, id_column=id_column)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix == ".parquet":
            return read_parquet(path, **columns)
        if suffix in LABEL_FILE_SUFFIXES:
            return read_label_file(path, allow_outside_root=allow_outside_root)
        raise LabelscrubError(f"{path}: unsupported file type {suffix or '(none)'}; expected .parquet, .csv or .jsonl")
    # Only the top two levels are looked at: walking a large image folder just to rule out Parquet would be slow.
    has_parquet = any(not any(part.startswith(".") for part in found.relative_to(path).parts)
                      for pattern in ("*.parquet", "*/*.parquet") for found in path.glob(pattern))
    has_subfolders = any(entry.is_dir() and not entry.name.startswith(".") for entry in path.iterdir())
    if has_parquet:  # a Parquet dataset may keep its images beside it (path column), so Parquet wins
        return read_parquet(path, **columns)
    if has_subfolders:
        return read_image_folder(path)
    raise LabelscrubError(f"{path}: neither an image folder (DATA/<class>/<image>) nor a folder of .parquet files")


def read_heldout(data: str | Path, class_names: list[str], **columns: str | None) -> LabeledImages:
    """Explicit held-out data (`--holdout`): its own training part, aligned to the training classes."""
    split = open_data(data, **columns)
    return align_classes(split.train, class_names)

