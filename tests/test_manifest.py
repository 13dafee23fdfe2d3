"""The cleaned manifest: every format re-reads, as `clean` input, to exactly the kept samples."""

import csv

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from imagedata import colour_for, encode, write_image, write_parquet
from runfolders import tiny_digits

import labelscrub
from labelscrub.errors import LabelscrubError
from labelscrub.manifest import cleaned_again_note, manifest_format_for, write_manifest
from labelscrub.sources import open_data

KEEP = np.array([True, False, True, True, False, True])


def image_folder(root):
    for index in range(6):
        write_image(root / ("cat" if index % 2 else "dog") / f"{index}.png", colour_for(index))
    return open_data(root).train


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_folder_manifest_reads_back_as_the_kept_samples(tmp_path, fmt):
    images = image_folder(tmp_path / "data")
    manifest = write_manifest(images, KEEP, tmp_path, fmt, metadata={"note": "test"})
    assert manifest.name == f"manifest.{fmt}"
    again = open_data(manifest).train
    reread = [(data, again.class_names[label]) for (_, data, _), label in zip(again.iter_encoded(), again.labels)]
    expected = [(path.read_bytes(), images.class_names[label])
                for path, label, keep in zip(images.paths, images.labels, KEEP) if keep]
    assert sorted(reread) == sorted(expected)


def test_parquet_manifest_keeps_the_input_rows_schema_and_metadata(tmp_path):
    source = write_parquet(tmp_path / "data.parquet", {
        "image": [encode(colour_for(index)) for index in range(6)],
        "label": [index % 3 for index in range(6)],
        "note": [f"row {index}" for index in range(6)],
    }, labels_names=["a", "b", "c"], row_group_size=2)
    images = open_data(source).train
    (tmp_path / "out").mkdir()
    manifest = write_manifest(images, KEEP, tmp_path / "out", manifest_format_for(images, None),
                              metadata={"note": "test"})
    table = pq.read_table(manifest)
    assert table.column("note").to_pylist() == [f"row {index}" for index in range(6) if KEEP[index]]
    assert table.schema.metadata[b"huggingface"] == pq.read_schema(source).metadata[b"huggingface"]
    again = open_data(manifest).train
    assert again.class_names == ["a", "b", "c"]
    assert again.labels.tolist() == [index % 3 for index in range(6) if KEEP[index]]
    assert [data for _, data, _ in again.iter_encoded()] == [encode(colour_for(i)) for i in range(6) if KEEP[i]]


@pytest.mark.parametrize("record", ["run.json", "decisions.json"])
def test_a_csv_manifest_beside_the_record_of_its_run_is_noted_as_cleaned_before(tmp_path, record):
    images = image_folder(tmp_path / "data")
    manifest = write_manifest(images, KEEP, tmp_path, "csv", metadata={})
    assert cleaned_again_note(manifest) is None  # a file called manifest.csv alone may be anyone's
    (tmp_path / record).write_text("{}")
    assert cleaned_again_note(manifest).startswith(f"{manifest} is a manifest labelscrub wrote")
    assert "lower bound" in cleaned_again_note(manifest)
    renamed = manifest.rename(tmp_path / "labels.csv")
    assert cleaned_again_note(renamed) is None
    assert cleaned_again_note(tmp_path / "data") is None  # the image folder it came from


def test_a_parquet_manifest_is_noted_as_cleaned_before_wherever_it_is_moved(tmp_path):
    source = write_parquet(tmp_path / "data.parquet", {"image": [encode(colour_for(i)) for i in range(6)],
                                                        "label": [index % 3 for index in range(6)]})
    (tmp_path / "out").mkdir()
    manifest = write_manifest(open_data(source).train, KEEP, tmp_path / "out", "parquet", metadata={"note": "test"})
    moved = manifest.rename(tmp_path / "cleaned.parquet")
    assert "cleaned.parquet is a manifest labelscrub wrote" in cleaned_again_note(moved)
    assert cleaned_again_note(source) is None
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert cleaned_again_note(tmp_path / "broken.parquet") is None  # the reader reports it, naming the file


def test_a_parquet_input_cannot_get_a_csv_manifest(tmp_path):
    source = write_parquet(tmp_path / "d.parquet", {"image": [encode(colour_for(0))], "label": pa.array([0])})
    with pytest.raises(LabelscrubError, match="manifest.parquet"):
        manifest_format_for(open_data(source).train, "csv")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_relabelled_samples_are_written_under_their_new_label(tmp_path, fmt):
    images = image_folder(tmp_path / "data")
    new_labels = images.labels.copy()
    new_labels[0] = 1 - new_labels[0]  # sample 0 is kept under the other class
    manifest = write_manifest(images, KEEP, tmp_path, fmt, metadata={}, labels=new_labels)
    if fmt == "csv":
        with manifest.open(newline="") as handle:
            by_path = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    else:
        table = pq.read_table(manifest)
        by_path = dict(zip(table.column("path").to_pylist(), table.column("label").to_pylist()))
    assert by_path[str(images.paths[0])] == images.class_names[new_labels[0]] != images.class_names[images.labels[0]]
    assert by_path[str(images.paths[2])] == images.class_names[images.labels[2]]


@pytest.mark.parametrize("label_type", ["int", "string"])
def test_a_relabelled_parquet_row_keeps_the_label_column_type(tmp_path, label_type):
    labels = [index % 3 for index in range(6)]
    names = pa.array([["a", "b", "c"][label] for label in labels])
    column = pa.array(labels, pa.int64()) if label_type == "int" else names
    source = write_parquet(tmp_path / "data.parquet", {
        "image": [encode(colour_for(index)) for index in range(6)], "label": column,
    }, labels_names=["a", "b", "c"] if label_type == "int" else None, row_group_size=2)
    images = open_data(source).train
    new_labels = images.labels.copy()
    new_labels[3] = 2  # row 3 (given "a") is kept as "c"
    (tmp_path / "out").mkdir()
    manifest = write_manifest(images, KEEP, tmp_path / "out", "parquet", metadata={}, labels=new_labels)
    table = pq.read_table(manifest)
    assert table.schema.field("label").type == pq.read_schema(source).field("label").type
    again = open_data(manifest).train
    names = [again.class_names[label] for label in again.labels]
    assert names == [["a", "b", "c"][new_labels[index]] for index in range(6) if KEEP[index]]
    assert pq.read_table(source).column("label").to_pylist() == column.to_pylist()  # the input is untouched


def test_overwriting_with_another_manifest_format_leaves_no_stale_manifest(tmp_path):
    data, out = tiny_digits(tmp_path / "digits", train_per_class=2, heldout_per_class=1), tmp_path / "out"
    options = dict(epochs=1, batch_size=8, warmup=0, ramp=0, rho_max=0.1, overwrite=True)
    labelscrub.clean(data, out, manifest_format="csv", **options)
    assert (out / "manifest.csv").exists()
    result = labelscrub.clean(data, out, manifest_format="jsonl", **options)
    assert result.manifest_path.name == "manifest.jsonl"
    assert sorted(path.name for path in out.glob("manifest.*")) == ["manifest.jsonl"]
