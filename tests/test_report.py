"""report.parquet, built from small arrays without training: the columns and types users read, the 0-based epoch
columns, nulls where nothing was measured, and the metadata written into the file and read back."""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelscrub.report import REPORT_SCHEMA, build_report, read_report_metadata, write_report

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog"]
UNREADABLE = "cannot decode the image"
# Per sample (columns) and epoch (rows): kept in that epoch's updates. a is never left out; b from epoch 1 on;
# c only in epoch 0 (the first epoch counts as 0); d in the last epoch only; e and f could not be read.
KEPT = np.array([[1, 1, 0, 1, 0, 0],
                 [1, 0, 1, 1, 0, 0],
                 [1, 0, 1, 0, 0, 0]], bool)
METADATA = {"config": {"rho_max": "auto", "epochs": 3}, "class_names": CLASSES, "rho_schedule": [0.0, 0.1, 0.2],
            "noise": {"estimated_noise_rate": 0.2, "note": "étiquettes bruitées"}}


def report() -> pa.Table:
    """Six samples over three epochs: a to d readable, e unreadable without a label, f unreadable with one."""
    p_label = np.array([0.9, 0.2, 0.8, 0.3, 0.0, 0.0])
    images = SimpleNamespace(sample_ids=["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"],
                             labels=np.array([0, 1, 0, 1, -1, 1]), class_names=CLASSES)
    measured = SimpleNamespace(
        predicted=np.array([0, 0, 0, 0, 0, 0]), p_label=p_label,
        final_loss=-np.log(np.maximum(p_label, 1e-6)), score=np.array([0.1, 2.0, 0.3, 1.5, 0.0, 0.0]),
        loss_history=np.tile(np.array([[2.0], [1.0], [0.5]]), (1, 6)) * np.arange(1, 7), kept_history=KEPT,
        suggested=np.array([0, 0, -1, -1, 1, 1]), suggestion_confidence=np.array([0.95, 0.9, 0.0, 0.0, 0.9, 0.9]))
    return build_report(
        images, measured, dropped=np.array([False, True, False, True, True, True]),
        confused_with=np.array([-1, 0, -1, -1, -1, 0]),
        errors=[None, None, None, None, UNREADABLE, UNREADABLE], metadata=METADATA)


def rows() -> dict[str, dict]:
    return {row["sample_id"]: row for row in report().to_pylist()}


# The columns and types users read the report with (README, "Outputs"); a change here breaks their code.
COLUMNS = [("sample_id", pa.string()), ("label", pa.int64()), ("label_name", pa.string()),
           ("predicted", pa.int64()), ("predicted_name", pa.string()), ("p_label", pa.float32()),
           ("loss", pa.float32()), ("loss_trajectory", pa.list_(pa.float32())), ("dropped", pa.bool_()),
           ("first_dropped_epoch", pa.int32()), ("epochs_dropped", pa.int32()), ("score", pa.float32()),
           ("confused_with", pa.string()), ("suggested_label", pa.int64()), ("suggested_name", pa.string()),
           ("suggestion_confidence", pa.float32()), ("error", pa.string())]


def documented_columns() -> list[str]:
    """The column names of the README's report table, in its order."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| `sample_id`"))
    names = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`(\w+)`", line.split("|")[1])
    return names


def test_the_columns_and_their_types_are_the_documented_ones():
    schema = report().schema
    assert [(field.name, field.type) for field in schema] == COLUMNS
    assert schema.remove_metadata().equals(REPORT_SCHEMA)
    assert documented_columns() == [name for name, _ in COLUMNS]


def test_one_row_per_sample_in_the_order_given_with_names_for_the_class_indices():
    table = report()
    assert table.column("sample_id").to_pylist() == ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    by_id = rows()
    assert (by_id["b.png"]["label"], by_id["b.png"]["label_name"]) == (1, "dog")
    assert (by_id["b.png"]["predicted"], by_id["b.png"]["predicted_name"]) == (0, "cat")
    assert by_id["b.png"]["p_label"] == pytest.approx(0.2) and by_id["b.png"]["loss"] == pytest.approx(-np.log(0.2))
    assert by_id["b.png"]["score"] == pytest.approx(2.0)
    assert by_id["d.png"]["loss_trajectory"] == pytest.approx([8.0, 4.0, 2.0])  # one value per epoch, in order


def test_the_epoch_columns_count_from_zero_and_null_means_never_left_out():
    by_id = rows()
    first = {sample: row["first_dropped_epoch"] for sample, row in by_id.items()}
    count = {sample: row["epochs_dropped"] for sample, row in by_id.items()}
    assert first == {"a.png": None, "b.png": 1, "c.png": 0, "d.png": 2, "e.png": None, "f.png": None}
    assert count == {"a.png": 0, "b.png": 2, "c.png": 1, "d.png": 1, "e.png": 0, "f.png": 0}
    # left out of some epochs is not the final decision: c came back and stays in the manifest
    assert [by_id[sample]["dropped"] for sample in ("a.png", "b.png", "c.png", "d.png")] == [False, True, False, True]


def test_an_unreadable_sample_keeps_its_id_label_and_error_and_nothing_measured():
    by_id = rows()
    for sample in ("e.png", "f.png"):
        row = by_id[sample]
        assert row["error"] == UNREADABLE and row["dropped"] is False  # never trained on: not a dropped label
        measured = ("predicted", "predicted_name", "p_label", "loss", "loss_trajectory", "score", "confused_with",
                    "suggested_label", "suggested_name", "suggestion_confidence")
        assert all(row[column] is None for column in measured), row
    assert (by_id["f.png"]["label"], by_id["f.png"]["label_name"]) == (1, "dog")
    assert (by_id["e.png"]["label"], by_id["e.png"]["label_name"]) == (None, None)  # a row without a label
    assert all(by_id[sample]["error"] is None for sample in ("a.png", "b.png", "c.png", "d.png"))


def test_confusions_and_suggestions_are_named_and_null_where_there_are_none():
    by_id = rows()
    assert by_id["b.png"]["confused_with"] == "cat" and by_id["a.png"]["confused_with"] is None
    # a suggestion may confirm the given label (a) or name another class (b)
    assert (by_id["a.png"]["suggested_label"], by_id["a.png"]["suggested_name"]) == (0, "cat")
    assert (by_id["b.png"]["suggested_label"], by_id["b.png"]["suggested_name"]) == (0, "cat")
    assert by_id["b.png"]["suggestion_confidence"] == pytest.approx(0.9)
    no_suggestion = by_id["c.png"]
    assert no_suggestion["suggested_label"] is None and no_suggestion["suggested_name"] is None
    assert no_suggestion["suggestion_confidence"] is None


def test_the_file_reads_back_with_its_rows_and_metadata(tmp_path):
    target = tmp_path / "report.parquet"
    write_report(report(), target)
    assert [path.name for path in tmp_path.iterdir()] == ["report.parquet"]  # no temporary file left behind
    assert pq.read_table(target).to_pylist() == report().to_pylist()
    assert read_report_metadata(target) == METADATA


def test_a_parquet_file_without_labelscrub_metadata_reads_as_empty(tmp_path):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    assert read_report_metadata(tmp_path / "other.parquet") == {}
