"""Image decoding (labelscrub.images): colour handling, resizing, and bad files that must not shift their neighbours."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from imagedata import BLUE, CYAN, GREEN, RED, SIDE, YELLOW, colour_for, encode, write_image, write_parquet
from PIL import Image

from labelscrub import images as images_module
from labelscrub.images import decode_all, decode_one
from labelscrub.sources import open_data

# --- decoding ------------------------------------------------------------------------------------------------------

def test_decode_grayscale_gives_three_identical_channels():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buffer, format="PNG")

    pixels = decode_one(buffer.getvalue(), 8)

    assert pixels.shape == (3, 8, 8) and pixels.dtype == np.uint8
    for channel in pixels:
        np.testing.assert_array_equal(channel, gray)


def test_decode_palette_transparency_composited_onto_white():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * (256 - 2) * 3)
    for x in range(4):
        for y in range(8):
            image.putpixel((x, y), 1)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)  # palette entry 0 (black) is fully transparent

    pixels = decode_one(buffer.getvalue(), 8)

    assert tuple(pixels[:, 0, 0]) == (200, 10, 10)
    assert tuple(pixels[:, 0, 7]) == (255, 255, 255)  # not the black under the transparency


@pytest.mark.parametrize("mode, clear, solid", [("L", 0, 90), ("RGB", (0, 0, 0), (90, 20, 200))])
def test_decode_transparent_colour_key_composited_onto_white(mode, clear, solid):
    image = Image.new(mode, (8, 8), clear)
    image.paste(solid, (0, 0, 4, 8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=clear)  # a tRNS colour key, no alpha band

    pixels = decode_one(buffer.getvalue(), 8)

    expected = (solid,) * 3 if mode == "L" else solid
    assert tuple(pixels[:, 0, 0]) == tuple(expected)
    assert tuple(pixels[:, 0, 7]) == (255, 255, 255)


@pytest.mark.parametrize("width, height", [(16, 12), (5, 3), (40, 20)])
def test_decode_other_sizes_become_square_target(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), CYAN).save(buffer, format="PNG")

    pixels = decode_one(buffer.getvalue(), 8)

    assert pixels.shape == (3, 8, 8) and pixels.dtype == np.uint8
    assert (pixels.reshape(3, -1).T == CYAN).all()


def test_decode_all_marks_bad_files_without_shifting_neighbours(tmp_path):
    data = tmp_path / "data"
    write_image(data / "c" / "0.png", RED)
    (data / "c" / "1.png").write_bytes(encode(GREEN, side=64)[:60])  # truncated mid-image
    write_image(data / "c" / "2.png", BLUE)
    (data / "c" / "3.png").write_bytes(b"this is not an image at all")
    write_image(data / "c" / "4.png", YELLOW)
    images = open_data(data).train
    assert images.sample_ids == [f"c/{i}.png" for i in range(5)]

    pixels, errors = decode_all(images, SIDE, memory_budget_bytes=1 << 20)

    assert pixels.shape == (5, 3, SIDE, SIDE)
    assert [error is None for error in errors] == [True, False, True, False, True]
    assert all("cannot decode" in errors[i] for i in (1, 3))
    for index, colour in [(0, RED), (2, BLUE), (4, YELLOW)]:
        assert (colour == pixels[index].reshape(3, -1).T).all()
    assert not pixels[1].any() and not pixels[3].any()


def test_decode_all_keeps_read_errors_of_parquet_rows(tmp_path):
    file = write_parquet(tmp_path / "d.parquet", {
        "image": pa.array([encode(RED), None, encode(BLUE)], pa.binary()), "label": [0, None, 1]})
    images = open_data(file).train

    pixels, errors = decode_all(images, SIDE, memory_budget_bytes=1 << 20)

    assert errors[0] is None and errors[2] is None
    assert "no label" in errors[1]  # the read-time error wins over the missing image
    assert tuple(pixels[0][:, 0, 0]) == RED and tuple(pixels[2][:, 0, 0]) == BLUE


def test_decode_all_reports_every_sample_once_from_zero_up_to_the_total(tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "DECODE_CHUNK", 2)  # three chunks; the last holds only an unreadable row
    file = write_parquet(tmp_path / "d.parquet", {
        "image": pa.array([encode(RED), None, encode(BLUE), encode(GREEN), None], pa.binary()),
        "label": [0, 1, 1, 0, 1]})
    calls = []

    _, errors = decode_all(open_data(file).train, SIDE, memory_budget_bytes=1 << 20,
                           on_progress=lambda done, total: calls.append((done, total)))

    assert [error is None for error in errors] == [True, False, True, True, False]
    assert calls == [(done, 5) for done in range(6)]


def test_decoded_images_over_the_memory_budget_go_to_a_memory_mapped_file(tmp_path):
    for index in range(6):
        write_image(tmp_path / "data" / ("a" if index % 2 else "b") / f"{index}.png", colour_for(index))
    images = open_data(tmp_path / "data").train
    in_memory, _ = decode_all(images, SIDE, memory_budget_bytes=10**9, spill_path=tmp_path / "spill.npy")
    spilled, errors = decode_all(images, SIDE, memory_budget_bytes=0, spill_path=tmp_path / "spill.npy")
    assert isinstance(spilled, np.memmap) and not isinstance(in_memory, np.memmap)
    assert (tmp_path / "spill.npy").exists() and errors == [None] * 6
    np.testing.assert_array_equal(np.asarray(spilled), in_memory)
