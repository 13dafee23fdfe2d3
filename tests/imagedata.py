"""Tiny images and Parquet files for the tests, generated on the fly (nothing binary is committed).

Each image is a solid colour, so decoding it and looking at one pixel says which sample it was: that is how the tests
check that streams stay in sample order and that a bad sample never shifts its neighbours.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from labelscrub.images import decode_one

SIDE = 8  # pixels; every generated image is SIDE x SIDE unless a test needs otherwise

RED, GREEN, BLUE, YELLOW, CYAN = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)


def encode(color: tuple[int, int, int], fmt: str = "PNG", side: int = SIDE) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, format=fmt)
    return buffer.getvalue()


def colour_for(index: int) -> tuple[int, int, int]:
    """A distinct, lossless-friendly colour per sample index."""
    return (index * 20 % 256, 255 - index * 20 % 256, (index * 7) % 256)


def write_image(path: Path, color: tuple[int, int, int] = RED) -> Path:
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), path.suffix.lstrip(".").upper())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(color, fmt))
    return path


def write_parquet(path: Path, columns: dict, *, labels_names: list[str] | None = None,
                  label_column: str = "label", row_group_size: int | None = None) -> Path:
    table = pa.table(columns)
    if labels_names is not None:
        features = {label_column: {"names": labels_names, "_type": "ClassLabel"}}
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def pixel(data: bytes) -> tuple[int, ...]:
    """The colour of a decoded solid image (top-left pixel)."""
    return tuple(int(v) for v in decode_one(data, SIDE)[:, 0, 0])


def streamed(images) -> list[tuple[int, bytes | None, str | None]]:
    return list(images.iter_encoded())


def class_of(images) -> dict[str, str]:
    return {sample: images.class_names[label] for sample, label in zip(images.sample_ids, images.labels)}
