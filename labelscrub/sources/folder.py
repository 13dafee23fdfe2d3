"""Image folders in the torchvision ImageFolder layout: `DATA/<class>/**/<image>`.

Classes are the non-hidden subfolders of DATA, sorted by name; images are files with an image extension (any case)
anywhere below a class folder, hidden files and folders skipped. When every subfolder of DATA is a split name and one
is `train`, the folder is a split layout: `train` is cleaned and `val`/`valid`/`validation` (else `test`) is held out.
Sample ids are paths relative to DATA, with forward slashes, so they are the same on every OS.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from labelscrub.errors import LabelscrubError
from labelscrub.sources.base import (
    HELDOUT_SPLITS,
    TRAIN_SPLIT,
    LabeledImages,
    SplitData,
    align_classes,
    iter_file_bytes,
    printable,
    sorted_class_names,
)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_image_folder(root: Path) -> SplitData:
    subfolders = _visible_subfolders(root)
    names = {folder.name.lower() for folder in subfolders}
    if TRAIN_SPLIT in names and names <= {TRAIN_SPLIT, *HELDOUT_SPLITS}:
        by_name = {folder.name.lower(): folder for folder in subfolders}
        train = _read_classes(by_name[TRAIN_SPLIT], id_root=root)
        heldout_name = next((name for name in HELDOUT_SPLITS if name in by_name), None)
        heldout = None
        if heldout_name is not None:
            heldout = align_classes(_read_classes(by_name[heldout_name], id_root=root), train.class_names)
        return SplitData(train=train, heldout=heldout)
    return SplitData(train=_read_classes(root, id_root=root))


def _loose_files(folder: Path) -> list[str]:
    """Visible files sitting directly in `folder`, where only class folders belong."""
    return sorted(entry.name for entry in folder.iterdir() if entry.is_file() and not entry.name.startswith("."))


def _read_classes(folder: Path, *, id_root: Path) -> LabeledImages:
    class_folders = _visible_subfolders(folder)
    if not class_folders:
        raise LabelscrubError(
            f"{folder}: no class folders found; an image folder needs one subfolder per class (DATA/<class>/<image>)")
    class_names = sorted_class_names({printable(class_folder.name) for class_folder in class_folders})
    by_name = {printable(class_folder.name): class_folder for class_folder in class_folders}
    paths: list[Path] = []
    labels: list[int] = []
    notes: list[str] = []
    for label, name in enumerate(class_names):
        found = _image_files(by_name[name])
        if not found:
            notes.append(f"class folder {name!r} holds no images; the class is kept (index {label}) but has no samples")
        paths.extend(found)
        labels.extend([label] * len(found))
    if not paths:
        raise LabelscrubError(f"{folder}: the class folders hold no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    loose = _loose_files(folder)
    if loose:
        notes.append(f"{len(loose)} file(s) directly in {folder} have no class folder and were ignored "
                     f"(first: {printable(loose[0])})")
    sample_ids = [printable(path.relative_to(id_root).as_posix()) for path in paths]
    # abspath, not resolve(): a symlink loop must become one unreadable sample, not an exception here.
    absolute = [Path(os.path.abspath(path)) for path in paths]
    errors: list[str | None] = [
        None if printable(str(path)) == str(path) else "file name is not valid UTF-8; rename the file"
        for path in paths]
    return LabeledImages(
        kind="folder", location=folder, sample_ids=sample_ids, labels=np.array(labels, dtype=np.int64),
        class_names=class_names, paths=absolute, errors=errors, notes=notes,
        iter_encoded=lambda: iter_file_bytes(absolute, errors))


def _visible_subfolders(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        raise LabelscrubError(f"{folder}: cannot list the folder ({error.strerror or error})") from None
    return [entry for entry in entries if entry.is_dir() and not entry.name.startswith(".")]


def _image_files(class_folder: Path) -> list[Path]:
    """Image files below `class_folder`, sorted, hidden entries skipped, symlinked folders not followed
    (a symlink loop would otherwise never end)."""
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(class_folder):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(current) / name)
    return sorted(found)
