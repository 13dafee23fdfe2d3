"""Small JPEG thumbnails of a few chosen samples, as data: URIs a self-contained page can show.

Only the chosen samples are read: image files directly by path, Parquet rows by reading just the row groups that
hold them, so a page of 2,000 thumbnails of a 50,000-image dataset takes seconds. A sample that cannot be read or
decoded gets no thumbnail; that never stops the page.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq

from labelscrub.images import open_rgb
from labelscrub.sources import LabeledImages
from labelscrub.sources.base import read_file_bytes
from labelscrub.sources.parquet import encoded_value

THUMBNAIL_SIDE = 80  # longest side in pixels; smaller images keep their own size (the page scales them up)
JPEG_QUALITY = 75  # about 2-3 KB for an 80 px photo: 2,000 of them stay well under the page's 10 MB


def thumbnails(images: LabeledImages, indices: list[int]) -> dict[int, str]:
    """{sample index: data URI} for the samples of `indices` that could be read and decoded."""
    encoded = _read_chosen(images, sorted(set(indices)))
    uris = {}
    for index, data in encoded.items():
        try:
            uris[index] = _jpeg_data_uri(data)
        except Exception:  # a broken image is already reported as unreadable; the page just shows no picture
            continue
    return uris


def _jpeg_data_uri(data: bytes) -> str:
    image = open_rgb(data)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _read_chosen(images: LabeledImages, indices: list[int]) -> dict[int, bytes]:
    if images.paths is not None:
        found = {index: read_file_bytes(images.paths[index])[0] for index in indices}
    elif images.parquet is not None:
        found = _read_parquet_rows(images, indices)
    else:  # no direct access: stream everything once, keep the chosen
        wanted = set(indices)
        found = {index: data for index, data, _ in images.iter_encoded() if index in wanted}
    return {index: data for index, data in found.items() if data}


def _read_parquet_rows(images: LabeledImages, indices: list[int]) -> dict[int, bytes | None]:
    """The image bytes of the chosen samples, reading only the row groups that hold them."""
    locations = images.parquet
    assert locations is not None
    column = _image_column(images)
    by_file: dict[int, list[int]] = defaultdict(list)
    for index in indices:
        by_file[int(locations.file_index[index])].append(index)
    found: dict[int, bytes | None] = {}
    for number, chosen in by_file.items():
        file = locations.files[number]
        parquet_file = pq.ParquetFile(file)
        starts = np.cumsum([0] + [parquet_file.metadata.row_group(group).num_rows
                                  for group in range(parquet_file.num_row_groups)])
        rows = np.array([locations.row_index[index] for index in chosen])
        groups = np.searchsorted(starts, rows, side="right") - 1
        for group in np.unique(groups):
            values = parquet_file.read_row_group(int(group), columns=[column]).column(0)
            for index, row in zip(np.array(chosen)[groups == group], rows[groups == group]):
                found[int(index)] = encoded_value(values[int(row - starts[group])].as_py(), file)[0]
    return found


def _image_column(images: LabeledImages) -> str:
    locations = images.parquet
    assert locations is not None and locations.image_column is not None
    return locations.image_column
