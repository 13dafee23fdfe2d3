"""Data sources (labelscrub.sources) on tiny data generated in tmp_path (see imagedata.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from imagedata import (
    BLUE,
    GREEN,
    RED,
    YELLOW,
    class_of,
    colour_for,
    encode,
    pixel,
    streamed,
    write_image,
    write_parquet,
)

from labelscrub.errors import LabelscrubError
from labelscrub.sources import open_data, read_heldout

# --- image folders -------------------------------------------------------------------------------------------------

def test_folder_finds_every_image_extension_nested_and_skips_hidden_and_non_images(tmp_path):
    data = tmp_path / "data"
    for name in ["a.JPG", "b.png", "nested/deeper/c.jpeg", "e.bmp"]:
        write_image(data / "cat" / name)
    for name in ["f.gif", "g.webp", "h.tif", "i.TIFF", "j.Png"]:
        write_image(data / "dog" / name)
    write_image(data / "cat" / ".hidden.png")
    write_image(data / "cat" / ".thumbs" / "k.png")
    write_image(data / ".cache" / "x.png")  # a hidden folder is not a class
    (data / "dog" / "notes.txt").write_text("not an image")
    (data / "dog" / "README").write_text("no suffix")

    split = open_data(data)

    assert split.heldout is None
    assert split.train.kind == "folder"
    assert split.train.class_names == ["cat", "dog"]
    assert class_of(split.train) == {
        "cat/a.JPG": "cat", "cat/b.png": "cat", "cat/nested/deeper/c.jpeg": "cat", "cat/e.bmp": "cat",
        "dog/f.gif": "dog", "dog/g.webp": "dog", "dog/h.tif": "dog", "dog/i.TIFF": "dog", "dog/j.Png": "dog"}
    assert all(error is None for error in split.train.errors)


def test_folder_classes_sorted_by_name_and_numeric_names_as_numbers(tmp_path):
    for name in ["zebra", "ant", "mole"]:
        write_image(tmp_path / "words" / name / "x.png")
    for name in ["10", "2", "1"]:
        write_image(tmp_path / "numbers" / name / "x.png")

    words = open_data(tmp_path / "words").train
    numbers = open_data(tmp_path / "numbers").train

    assert words.class_names == ["ant", "mole", "zebra"]
    assert numbers.class_names == ["1", "2", "10"]
    assert class_of(numbers) == {"1/x.png": "1", "2/x.png": "2", "10/x.png": "10"}


def test_folder_numeric_names_that_tie_as_numbers_have_a_fixed_order(tmp_path):
    # "1", "01", "001" are all 1; without a tie-break their order (so the class indices) followed string hashing.
    for name in ["10", "2", "1", "01", "001", "0001"]:
        write_image(tmp_path / name / "x.png")

    assert open_data(tmp_path).train.class_names == ["0001", "001", "01", "1", "2", "10"]


def test_folder_ids_are_posix_relative_paths_and_stream_the_file_bytes(tmp_path):
    data = tmp_path / "data"
    files = [write_image(data / "b" / "sub" / "one.png", RED), write_image(data / "a" / "two.png", BLUE)]

    images = open_data(data).train

    assert images.sample_ids == ["a/two.png", "b/sub/one.png"]
    assert [path.read_bytes() for path in images.paths] == [files[1].read_bytes(), files[0].read_bytes()]
    assert [(index, pixel(blob), error) for index, blob, error in streamed(images)] == [
        (0, BLUE, None), (1, RED, None)]


# --- split folders -------------------------------------------------------------------------------------------------

def test_split_folder_cleans_train_and_aligns_val_missing_a_class(tmp_path):
    data = tmp_path / "data"
    for name in ["cat", "dog", "fish"]:
        write_image(data / "train" / name / "x.png")
    write_image(data / "val" / "cat" / "v1.png")
    write_image(data / "val" / "fish" / "v2.png")
    write_image(data / "test" / "dog" / "t1.png")  # val is preferred over test

    split = open_data(data)

    assert split.train.class_names == ["cat", "dog", "fish"]
    assert split.train.sample_ids == ["train/cat/x.png", "train/dog/x.png", "train/fish/x.png"]
    assert split.heldout is not None
    assert split.heldout.sample_ids == ["val/cat/v1.png", "val/fish/v2.png"]
    assert split.heldout.class_names == ["cat", "dog", "fish"]
    assert split.heldout.labels.tolist() == [0, 2]


def test_split_folder_uses_test_when_there_is_no_val(tmp_path):
    data = tmp_path / "data"
    write_image(data / "train" / "a" / "x.png")
    write_image(data / "train" / "b" / "x.png")
    write_image(data / "test" / "b" / "t.png")

    split = open_data(data)

    assert split.heldout.sample_ids == ["test/b/t.png"]
    assert split.heldout.labels.tolist() == [1]


def test_split_folder_heldout_class_unknown_to_train_is_an_error(tmp_path):
    data = tmp_path / "data"
    write_image(data / "train" / "cat" / "x.png")
    write_image(data / "val" / "bird" / "y.png")

    with pytest.raises(LabelscrubError, match="bird"):
        open_data(data)


# --- Parquet -------------------------------------------------------------------------------------------------------

def test_parquet_binary_images_int_labels_stream_in_order(tmp_path):
    colours = [colour_for(i) for i in range(5)]
    file = write_parquet(tmp_path / "data.parquet", {
        "image": pa.array([encode(c) for c in colours], pa.binary()), "label": [2, 0, 1, 2, 0]})

    split = open_data(file)
    images = split.train

    assert split.heldout is None
    assert images.kind == "parquet"
    assert images.sample_ids == [f"data.parquet:{row}" for row in range(5)]
    assert images.labels.tolist() == [2, 0, 1, 2, 0]
    assert images.class_names == ["0", "1", "2"]
    assert images.parquet.row_index.tolist() == [0, 1, 2, 3, 4]
    assert [(index, pixel(blob), error) for index, blob, error in streamed(images)] == [
        (i, c, None) for i, c in enumerate(colours)]


def test_parquet_hf_image_struct_and_classlabel_names(tmp_path):
    colours = [RED, GREEN, BLUE]
    struct = pa.array([{"bytes": encode(c), "path": f"{i}.png"} for i, c in enumerate(colours)],
                      pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    file = write_parquet(tmp_path / "hf.parquet", {"image": struct, "label": pa.array([1, 0, 3], pa.int64())},
                         labels_names=["airplane", "bird", "cat", "deer"])

    images = open_data(file).train

    assert images.class_names == ["airplane", "bird", "cat", "deer"]
    assert [images.class_names[label] for label in images.labels] == ["bird", "airplane", "deer"]
    assert [pixel(blob) for _, blob, _ in streamed(images)] == colours


def test_parquet_string_paths_relative_to_the_file_and_string_labels(tmp_path):
    folder = tmp_path / "set"
    files = [write_image(folder / "imgs" / f"{i}.png", c) for i, c in enumerate([RED, GREEN, BLUE])]
    file = write_parquet(folder / "data.parquet", {
        "image": ["imgs/0.png", "imgs/1.png", "imgs/2.png"], "label": ["dog", "cat", "dog"]})

    images = open_data(file).train

    assert images.class_names == ["cat", "dog"]
    assert images.labels.tolist() == [1, 0, 1]
    assert [blob for _, blob, _ in streamed(images)] == [f.read_bytes() for f in files]


def test_parquet_missing_path_image_is_a_sample_error_not_a_shift(tmp_path):
    write_image(tmp_path / "a.png", RED)
    write_image(tmp_path / "c.png", BLUE)
    file = write_parquet(tmp_path / "data.parquet", {"image": ["a.png", "gone.png", "c.png"], "label": [0, 1, 0]})

    stream = streamed(open_data(file).train)

    assert [index for index, _, _ in stream] == [0, 1, 2]
    assert pixel(stream[0][1]) == RED and pixel(stream[2][1]) == BLUE
    assert stream[1][1] is None and "gone.png" in stream[1][2]


@pytest.mark.parametrize("image_name, label_name", [
    ("img", "labels"), ("image", "target"), ("img", "class"), ("encoded_png", "label")])
def test_parquet_detects_image_and_label_columns_by_name(tmp_path, image_name, label_name):
    file = write_parquet(tmp_path / "d.parquet", {
        "caption": ["x", "y"],  # a string column must not be mistaken for images or labels
        image_name: pa.array([encode(RED), encode(BLUE)], pa.binary()), label_name: [1, 0]})

    images = open_data(file).train

    assert images.labels.tolist() == [1, 0]
    assert [pixel(blob) for _, blob, _ in streamed(images)] == [RED, BLUE]


def test_parquet_explicit_columns_override_detection(tmp_path):
    file = write_parquet(tmp_path / "d.parquet", {
        "thumb": pa.array([encode(RED), encode(RED)], pa.binary()),
        "full": pa.array([encode(GREEN), encode(BLUE)], pa.binary()),
        "label": [0, 0], "fine": ["b", "a"], "key": ["k-1", "k-2"]})

    with pytest.raises(LabelscrubError, match="image-column"):
        open_data(file)  # two binary columns and neither is named image/img
    images = open_data(file, image_column="full", label_column="fine", id_column="key").train

    assert images.sample_ids == ["k-1", "k-2"]
    assert images.class_names == ["a", "b"]
    assert images.labels.tolist() == [1, 0]
    assert [pixel(blob) for _, blob, _ in streamed(images)] == [GREEN, BLUE]


def test_parquet_unknown_explicit_column_is_an_error(tmp_path):
    file = write_parquet(tmp_path / "d.parquet", {"image": pa.array([encode(RED)], pa.binary()), "label": [0]})

    with pytest.raises(LabelscrubError, match="nope"):
        open_data(file, label_column="nope")


def test_parquet_folder_of_files_ids_relative_to_folder_in_order(tmp_path):
    data = tmp_path / "data"
    write_parquet(data / "part-0.parquet", {"image": pa.array([encode(RED), encode(GREEN)], pa.binary()),
                                            "label": ["a", "b"]})
    write_parquet(data / "more" / "part-1.parquet", {"image": pa.array([encode(BLUE)], pa.binary()),
                                                     "label": ["c"]})

    split = open_data(data)
    images = split.train

    assert split.heldout is None
    assert images.sample_ids == ["more/part-1.parquet:0", "part-0.parquet:0", "part-0.parquet:1"]
    assert class_of(images) == {"more/part-1.parquet:0": "c", "part-0.parquet:0": "a", "part-0.parquet:1": "b"}
    assert [(index, pixel(blob)) for index, blob, _ in streamed(images)] == [(0, BLUE), (1, RED), (2, GREEN)]
    assert images.parquet.file_index.tolist() == [0, 1, 1]
    assert images.parquet.row_index.tolist() == [0, 0, 1]


def test_parquet_files_with_different_int_widths_read_as_one(tmp_path):
    data = tmp_path / "data"
    image = pa.array([encode(RED)], pa.binary())
    write_parquet(data / "a.parquet", {"image": image, "label": pa.array([0], pa.int32())})
    write_parquet(data / "b.parquet", {"image": image, "label": pa.array([1], pa.int64())})
    write_parquet(data / "c.parquet", {"image": image, "label": ["one"]})

    with pytest.raises(LabelscrubError, match="same label type"):
        open_data(data)  # ints in a.parquet, strings in c.parquet
    (data / "c.parquet").unlink()
    images = open_data(data).train

    assert images.labels.tolist() == [0, 1]
    assert images.class_names == ["0", "1"]


def test_parquet_split_files_train_and_test(tmp_path):
    data = tmp_path / "data"
    write_parquet(data / "train.parquet", {"image": pa.array([encode(RED)] * 3, pa.binary()),
                                           "label": ["a", "b", "c"]})
    write_parquet(data / "test.parquet", {"image": pa.array([encode(GREEN), encode(BLUE)], pa.binary()),
                                          "label": ["c", "a"]})

    split = open_data(data)

    assert split.train.sample_ids == ["train.parquet:0", "train.parquet:1", "train.parquet:2"]
    assert split.heldout.sample_ids == ["test.parquet:0", "test.parquet:1"]
    assert split.heldout.class_names == ["a", "b", "c"]
    assert split.heldout.labels.tolist() == [2, 0]
    assert [pixel(blob) for _, blob, _ in streamed(split.heldout)] == [GREEN, BLUE]


def test_parquet_hf_shard_names_prefer_validation_over_test(tmp_path):
    data = tmp_path / "data"
    names = ["zero", "one", "two"]

    def shard(name: str, labels: list[int]) -> None:
        write_parquet(data / "data" / f"{name}-00000-of-00001.parquet",
                      {"image": pa.array([encode(RED)] * len(labels), pa.binary()), "label": labels},
                      labels_names=names)

    shard("train", [0, 1, 2, 1])
    shard("validation", [2, 2])
    shard("test", [0])

    split = open_data(data)

    assert split.train.class_names == names
    assert len(split.train) == 4
    assert split.heldout.sample_ids == ["data/validation-00000-of-00001.parquet:0",
                                        "data/validation-00000-of-00001.parquet:1"]
    assert split.heldout.labels.tolist() == [2, 2]


def test_parquet_split_heldout_class_unknown_to_train_is_an_error(tmp_path):
    data = tmp_path / "data"
    write_parquet(data / "train.parquet", {"image": pa.array([encode(RED)], pa.binary()), "label": ["cat"]})
    write_parquet(data / "test.parquet", {"image": pa.array([encode(RED)], pa.binary()), "label": ["bird"]})

    with pytest.raises(LabelscrubError, match="bird"):
        open_data(data)


def test_parquet_small_row_groups_stream_every_row_in_order(tmp_path, monkeypatch):
    # Batches smaller than and misaligned with the row groups, so both boundaries are crossed.
    monkeypatch.setattr("labelscrub.sources.parquet.STREAM_BATCH_ROWS", 4)
    colours = [colour_for(i) for i in range(10)]
    file = write_parquet(tmp_path / "d.parquet", {"image": pa.array([encode(c) for c in colours], pa.binary()),
                                                  "label": [i % 3 for i in range(10)]}, row_group_size=3)
    assert pq.ParquetFile(file).num_row_groups == 4

    stream = streamed(open_data(file).train)

    assert [index for index, _, _ in stream] == list(range(10))
    assert [pixel(blob) for _, blob, _ in stream] == colours


@pytest.mark.parametrize("labels, expected", [
    ([0, None, 1, 1], [0, -1, 1, 1]), (["b", None, "a", "b"], [1, -1, 0, 1])])
def test_parquet_null_label_marks_only_that_row(tmp_path, labels, expected):
    colours = [RED, GREEN, BLUE, YELLOW]
    file = write_parquet(tmp_path / "d.parquet", {"image": pa.array([encode(c) for c in colours], pa.binary()),
                                                  "label": labels})

    images = open_data(file).train

    assert images.labels.tolist() == expected
    assert images.errors[0] is None and images.errors[2] is None and images.errors[3] is None
    assert "no label" in images.errors[1]
    assert [pixel(blob) for _, blob, _ in streamed(images)] == colours


# --- CSV / JSONL label files ---------------------------------------------------------------------------------------

def _label_file_images(tmp_path: Path) -> tuple[Path, Path, Path]:
    return (write_image(tmp_path / "imgs" / "a.png", RED), write_image(tmp_path / "imgs" / "b.png", GREEN),
            write_image(tmp_path / "elsewhere" / "c.png", BLUE))


def test_csv_label_file_relative_and_absolute_paths(tmp_path):
    a, b, c = _label_file_images(tmp_path)
    file = tmp_path / "labels.csv"
    file.write_text(f"path,label\nimgs/b.png,dog\nimgs/a.png,cat\n{c},dog\n")

    split = open_data(file)
    images = split.train

    assert split.heldout is None
    assert images.kind == "labels"
    assert images.sample_ids == ["imgs/b.png", "imgs/a.png", str(c)]
    assert images.class_names == ["cat", "dog"]
    assert images.labels.tolist() == [1, 0, 1]
    assert [blob for _, blob, _ in streamed(images)] == [b.read_bytes(), a.read_bytes(), c.read_bytes()]


def test_jsonl_label_file_numeric_classes_sorted_as_numbers(tmp_path):
    a, b, c = _label_file_images(tmp_path)
    file = tmp_path / "labels.jsonl"
    rows = [{"path": "imgs/a.png", "label": 10}, {"path": "imgs/b.png", "label": 2}, {"path": str(c), "label": 2}]
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))

    images = open_data(file).train

    assert images.sample_ids == ["imgs/a.png", "imgs/b.png", str(c)]
    assert images.class_names == ["2", "10"]
    assert images.labels.tolist() == [1, 0, 0]
    assert [pixel(blob) for _, blob, _ in streamed(images)] == [RED, GREEN, BLUE]


@pytest.mark.parametrize("name, text", [
    ("labels.csv", "path,label\nimgs/a.png,cat\nimgs/b.png,dog\n"),
    ("labels.jsonl", '{"path": "imgs/a.png", "label": "cat"}\n{"path": "imgs/b.png", "label": "dog"}\n')])
def test_label_file_with_a_byte_order_mark(tmp_path, name, text):
    _label_file_images(tmp_path)
    file = tmp_path / name
    file.write_bytes(text.encode("utf-8-sig"))  # what Windows tools write

    images = open_data(file).train

    assert images.sample_ids == ["imgs/a.png", "imgs/b.png"]
    assert images.class_names == ["cat", "dog"]


def test_label_file_missing_image_is_a_sample_error(tmp_path):
    _label_file_images(tmp_path)
    file = tmp_path / "labels.csv"
    file.write_text("path,label\nimgs/a.png,cat\nimgs/gone.png,cat\nimgs/b.png,dog\n")

    stream = streamed(open_data(file).train)

    assert pixel(stream[0][1]) == RED and pixel(stream[2][1]) == GREEN
    assert stream[1][1] is None and "gone.png" in stream[1][2]


@pytest.mark.parametrize("name, text, line", [
    ("labels.csv", "path,label\nimgs/a.png,cat\nimgs/b.png,dog\nimgs/a.png,dog\n", 4),
    ("labels.jsonl", '{"path": "imgs/a.png", "label": "cat"}\n{"path": "imgs/a.png", "label": "dog"}\n', 2)])
def test_label_file_duplicate_path_names_the_line(tmp_path, name, text, line):
    file = tmp_path / name
    file.write_text(text)

    with pytest.raises(LabelscrubError, match="listed twice") as caught:
        open_data(file)
    assert f"{file}:{line}:" in str(caught.value)


@pytest.mark.parametrize("name, text, line", [
    ("labels.csv", "path,label\nimgs/a.png,cat\nimgs/b.png,dog,extra\n", 3),
    ("labels.csv", "path,label\nimgs/a.png,cat\nimgs/b.png\n", 3),
    ("labels.csv", "path,label\nimgs/a.png,cat\nimgs/b.png,\n", 3),
    ("labels.jsonl", '{"path": "imgs/a.png", "label": "cat"}\n{"path": "imgs/b.png", "label": \n', 2),
    ("labels.jsonl", '{"path": "imgs/a.png", "label": "cat"}\n\n{"path": "imgs/b.png"}\n', 3),
    ("labels.jsonl", '{"path": "imgs/a.png", "label": "cat"}\n["imgs/b.png", "dog"]\n', 2)])
def test_label_file_malformed_line_names_file_and_line(tmp_path, name, text, line):
    file = tmp_path / name
    file.write_text(text)

    with pytest.raises(LabelscrubError) as caught:
        open_data(file)
    assert f"{file}:{line}:" in str(caught.value)


@pytest.mark.parametrize("name, text", [
    ("labels.csv", "image_path,label\nimgs/a.png,cat\n"),
    ("labels.csv", "path,category\nimgs/a.png,cat\n"),
    ("labels.csv", "imgs/a.png,cat\nimgs/b.png,dog\n"),  # no header at all
    ("labels.jsonl", '{"where": "imgs/a.png", "label": "cat"}\n')])
def test_label_file_missing_header_column_is_an_error(tmp_path, name, text):
    file = tmp_path / name
    file.write_text(text)

    with pytest.raises(LabelscrubError, match="column") as caught:
        open_data(file)
    assert str(file) in str(caught.value)


# --- open_data dispatch and read_heldout ---------------------------------------------------------------------------

def test_open_data_nonexistent_path_names_it(tmp_path):
    missing = tmp_path / "no-such-data"
    with pytest.raises(LabelscrubError) as caught:
        open_data(missing)
    assert str(missing) in str(caught.value)


def test_open_data_unsupported_suffix_names_it(tmp_path):
    file = tmp_path / "data.txt"
    file.write_text("path,label\n")
    with pytest.raises(LabelscrubError, match=r"\.txt") as caught:
        open_data(file)
    assert str(file) in str(caught.value)


def test_open_data_folder_without_classes_or_parquet_is_an_error(tmp_path):
    write_image(tmp_path / "flat" / "a.png")
    with pytest.raises(LabelscrubError, match="flat"):
        open_data(tmp_path / "flat")


def test_read_heldout_aligns_to_training_classes(tmp_path):
    write_image(tmp_path / "hold" / "dog" / "x.png")
    write_image(tmp_path / "hold" / "ant" / "y.png")

    heldout = read_heldout(tmp_path / "hold", ["ant", "cat", "dog"])

    assert heldout.class_names == ["ant", "cat", "dog"]
    assert class_of(heldout) == {"ant/y.png": "ant", "dog/x.png": "dog"}
    with pytest.raises(LabelscrubError, match="dog"):
        read_heldout(tmp_path / "hold", ["ant", "cat"])
