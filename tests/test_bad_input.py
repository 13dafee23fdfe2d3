"""Broken and unusual input, generated here: each case is either quarantined (listed in the report with `error`
set, not trained on, left out of the manifest, counted in run.json) or stops the run before training with a
one-line error naming the file, row or column. The README's troubleshooting table lists the same outcomes."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from imagedata import colour_for, encode, write_image, write_parquet
from PIL import Image

import labelscrub
from labelscrub.cli import cli
from labelscrub.errors import LabelscrubError
from labelscrub.images import decode_one

TINY_RUN = dict(epochs=1, batch_size=4, max_bad_fraction=1.0, warmup=1, ramp=1)


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def awkward_but_valid() -> dict[str, bytes]:
    palette = Image.new("P", (8, 8), 0)  # index 0 is the transparent one
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    exif = Image.new("RGB", (8, 4), (10, 200, 10)).getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:])
    return {
        "palette-transparent.png": png(palette, transparency=0),
        "sixteen-bit.png": png(Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))),
        "grey.png": png(Image.new("L", (8, 8), 90)),
        "cmyk.jpg": jpeg(Image.new("CMYK", (8, 8), (0, 255, 255, 0))),
        "exif-rotated.jpg": jpeg(Image.new("RGB", (8, 4), (10, 200, 10)), exif=exif),
        "animated.gif": animated.getvalue(),
        "one-pixel.png": png(Image.new("RGB", (1, 1), (5, 5, 5))),
    }


def broken() -> dict[str, bytes]:
    return {
        "truncated.jpg": jpeg(Image.new("RGB", (64, 64), (100, 50, 20)))[:200],
        "zero-bytes.jpg": b"",
        "text.jpg": b"this is a text file, not a JPEG\n",
        "page.png": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "bomb.png": png(Image.new("1", (10_000, 10_000))),  # 100 megapixels, a few KB compressed
    }


@pytest.fixture(scope="module")
def dirty_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dirty") / "data"
    for index in range(6):
        write_image(root / "cat" / f"good-{index}.png", colour_for(index))
        write_image(root / "dog" / f"good-{index}.png", colour_for(index + 10))
    for name, data in {**awkward_but_valid(), **broken()}.items():
        (root / "cat" / name).write_bytes(data)
    os.symlink("loop.jpg", root / "dog" / "loop.jpg")  # points at itself
    (root / os.fsdecode(b"dog/caf\xe9.png")).write_bytes(encode(colour_for(3)))  # Latin-1 name, not UTF-8
    (root / "empty-class").mkdir()
    (root / "README.txt").write_text("a file directly under DATA")
    return root


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*"), key=lambda p: os.fsencode(p)):
        digest.update(os.fsencode(path.relative_to(root)))
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def dirty_run(dirty_folder, tmp_path_factory):
    before = tree_hash(dirty_folder)
    out = tmp_path_factory.mktemp("dirty-run")
    result = labelscrub.clean(dirty_folder, out, overwrite=True, **TINY_RUN)
    return result, before


def test_unreadable_files_are_quarantined_with_a_reason(dirty_run):
    result, _ = dirty_run
    errors = {row["sample_id"]: row["error"] for row in result.report().to_pylist()}
    for name in broken():
        assert errors[f"cat/{name}"], name
    assert "too large" in errors["cat/bomb.png"] or "pixel limit" in errors["cat/bomb.png"]
    assert "UTF-8" in errors["dog/caf\\xe9.png"]
    assert errors["dog/loop.jpg"]
    for name in awkward_but_valid():
        assert errors[f"cat/{name}"] is None, (name, errors[f"cat/{name}"])
    assert all(errors[f"{cls}/good-{i}.png"] is None for cls in ("cat", "dog") for i in range(6))


def test_quarantined_samples_are_not_trained_not_in_the_manifest_and_counted(dirty_run):
    result, _ = dirty_run
    rows = result.report().to_pylist()
    bad = [row for row in rows if row["error"]]
    assert len(bad) == len(broken()) + 2
    assert all(row["loss"] is None and row["loss_trajectory"] is None and not row["dropped"] for row in bad)
    manifest = (result.manifest_path).read_text()
    assert not any(row["sample_id"].split("/")[-1] in manifest for row in bad if "loop" not in row["sample_id"])
    assert "loop.jpg" not in manifest
    run = json.loads(result.run_json_path.read_text())
    assert run["counts"]["unreadable"] == len(bad)
    assert {entry["sample_id"] for entry in run["unreadable_samples"]} == {row["sample_id"] for row in bad}


def test_neighbours_of_bad_files_keep_their_own_labels(dirty_run):
    result, _ = dirty_run
    for row in result.report().to_pylist():
        assert row["label_name"] == row["sample_id"].split("/")[0]


def test_empty_class_and_loose_files_are_noted_not_fatal(dirty_run):
    result, _ = dirty_run
    notes = " ".join(result.summary["notes"])
    assert "empty-class" in notes and "README.txt" in notes
    assert result.class_names == ["cat", "dog", "empty-class"]


def test_the_input_is_never_modified(dirty_folder, dirty_run):
    _, before = dirty_run
    assert tree_hash(dirty_folder) == before


def test_awkward_images_decode_to_the_pixels_a_viewer_shows():
    images = awkward_but_valid()
    assert tuple(decode_one(images["palette-transparent.png"], 8)[:, 0, 0]) == (255, 255, 255)
    assert tuple(decode_one(images["animated.gif"], 8)[:, 4, 4]) == (200, 0, 0)  # the first frame
    grey = decode_one(images["sixteen-bit.png"], 8)
    assert grey.dtype == np.uint8 and 150 < grey[0, 0, 0] < 160  # 40000 / 65535 of white
    cmyk = decode_one(images["cmyk.jpg"], 8)
    assert cmyk[0, 4, 4] > 200 and cmyk[1, 4, 4] < 60  # cyan-free, magenta+yellow = red
    with Image.open(io.BytesIO(images["exif-rotated.jpg"])) as raw:
        assert raw.size == (8, 4)
    rotated = Image.open(io.BytesIO(images["exif-rotated.jpg"]))
    from PIL import ImageOps
    assert ImageOps.exif_transpose(rotated).size == (4, 8)


def test_too_many_bad_samples_stop_before_training_and_list_the_first(dirty_folder, tmp_path):
    with pytest.raises(LabelscrubError, match=r"cannot be read.*--max-bad-fraction.*cat/bomb.png"):
        labelscrub.clean(dirty_folder, tmp_path / "out", epochs=1, max_bad_fraction=0.1)
    assert not (tmp_path / "out" / "report.parquet").exists()


def test_a_single_class_is_a_clear_error(tmp_path):
    for index in range(3):
        write_image(tmp_path / "data" / "only" / f"{index}.png", colour_for(index))
    with pytest.raises(LabelscrubError, match="only one class"):
        labelscrub.clean(tmp_path / "data", tmp_path / "out", **TINY_RUN)


def test_a_class_with_one_sample_trains(tmp_path):
    write_image(tmp_path / "data" / "rare" / "0.png", colour_for(0))
    for index in range(5):
        write_image(tmp_path / "data" / "common" / f"{index}.png", colour_for(index + 1))
    result = labelscrub.clean(tmp_path / "data", tmp_path / "out", **TINY_RUN)
    assert result.n_samples == 6 and result.n_unreadable == 0


# --- Parquet ---------------------------------------------------------------------------------------------------

def parquet_images(count: int) -> list[bytes]:
    return [encode(colour_for(index)) for index in range(count)]


def test_parquet_null_labels_and_null_or_empty_images_are_quarantined_by_row(tmp_path):
    images = parquet_images(8)
    images[2], images[5] = None, b""
    labels = [0, 1, 0, 1, None, 1, 0, 1]
    source = write_parquet(tmp_path / "d.parquet", {"image": pa.array(images, pa.binary()),
                                                    "label": pa.array(labels, pa.int64())})
    result = labelscrub.clean(source, tmp_path / "out", **TINY_RUN)
    rows = {row["sample_id"]: row for row in result.report().to_pylist()}
    assert {sid for sid, row in rows.items() if row["error"]} == {"d.parquet:2", "d.parquet:4", "d.parquet:5"}
    assert rows["d.parquet:3"]["label"] == 1 and rows["d.parquet:6"]["label"] == 0
    assert pq.read_table(result.manifest_path).num_rows == 5


@pytest.mark.parametrize("case, columns, message", [
    ("missing label column", {"image": parquet_images(2), "name": ["a", "b"]}, "no label column"),
    ("float labels", {"image": parquet_images(2), "label": [0.5, 1.5]}, "integers or strings"),
    ("int images", {"img": [1, 2], "label": [0, 1]}, "image column 'img' has type int64"),
])
def test_parquet_schema_problems_stop_with_the_column_named(tmp_path, case, columns, message):
    source = write_parquet(tmp_path / "d.parquet", columns)
    with pytest.raises(LabelscrubError, match=message):
        labelscrub.clean(source, tmp_path / "out", **TINY_RUN)


def test_corrupt_and_empty_parquet_files_stop_with_the_file_named(tmp_path):
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(LabelscrubError, match="corrupt.parquet: not a readable Parquet file"):
        labelscrub.clean(corrupt, tmp_path / "out1", **TINY_RUN)
    empty = write_parquet(tmp_path / "empty.parquet", {"image": pa.array([], pa.binary()),
                                                       "label": pa.array([], pa.int64())})
    with pytest.raises(LabelscrubError, match="no rows"):
        labelscrub.clean(empty, tmp_path / "out2", **TINY_RUN)


# --- CSV / JSONL -----------------------------------------------------------------------------------------------

def test_label_file_missing_image_is_quarantined(tmp_path):
    for index in range(4):
        write_image(tmp_path / "imgs" / f"{index}.png", colour_for(index))
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"imgs/{index}.png,{'ab'[index % 2]}\n" for index in range(4)) + "imgs/missing.png,a\n")
    result = labelscrub.clean(tmp_path / "labels.csv", tmp_path / "out", **TINY_RUN)
    errors = {row["sample_id"]: row["error"] for row in result.report().to_pylist()}
    assert "missing.png" in errors["imgs/missing.png"] and sum(e is not None for e in errors.values()) == 1


def test_label_file_paths_outside_its_folder_need_allow_outside_root(tmp_path):
    for index in range(4):
        write_image(tmp_path / "imgs" / f"{index}.png", colour_for(index))
    (tmp_path / "lists").mkdir()
    label_file = tmp_path / "lists" / "labels.csv"
    label_file.write_text("path,label\n" + "".join(f"../imgs/{i}.png,{'ab'[i % 2]}\n" for i in range(4)))
    refused = CliRunner().invoke(cli, ["clean", str(label_file), "--out", str(tmp_path / "o1"), "--epochs", "1"])
    assert refused.exit_code != 0 and "labels.csv:2" in refused.output and "--allow-outside-root" in refused.output
    allowed = CliRunner().invoke(cli, ["clean", str(label_file), "--out", str(tmp_path / "o2"), "--epochs", "1",
                                       "--batch-size", "4", "--allow-outside-root", "--quiet"])
    assert allowed.exit_code == 0, allowed.output


@pytest.mark.parametrize("failing", ["labelscrub.manifest.csv.writer", "labelscrub.report.pq.write_table"])
def test_a_full_disk_leaves_no_partial_outputs(tmp_path, monkeypatch, failing):
    """The disk fills while the outputs are written: a clear error, and none of the outputs (no report without
    its manifest), no temporary files left behind."""
    for index in range(6):
        write_image(tmp_path / "data" / "ab"[index % 2] / f"{index}.png", colour_for(index))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(failing, disk_full)
    with pytest.raises(LabelscrubError, match="No space left on device"):
        labelscrub.clean(tmp_path / "data", tmp_path / "out", **TINY_RUN)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint.pt"]  # the run can resume
