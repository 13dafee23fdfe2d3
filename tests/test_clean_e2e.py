"""End to end: `labelscrub clean` on the bundled sample data, through the CLI, as a user would run it."""

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from conftest import DIGITS, DIGITS_PARQUET, FLIPPED

from labelscrub.cli import cli
from labelscrub.report import REPORT_SCHEMA, read_report_metadata
from labelscrub.sources import open_data

pytestmark = pytest.mark.e2e


def flipped(column: str) -> set[str]:
    with FLIPPED.open() as handle:
        return {row[column] for row in csv.DictReader(handle)}


def test_finds_the_planted_flips(folder_run):
    out, _ = folder_run
    report = pq.read_table(out / "report.parquet").to_pylist()
    dropped = {row["sample_id"] for row in report if row["dropped"]}
    truth = flipped("folder_sample_id")
    precision = len(dropped & truth) / len(dropped)
    recall = len(dropped & truth) / len(truth)
    print(f"precision {precision:.3f} recall {recall:.3f}")
    # auto drops about its estimate of the noise rate, which comes out a little over the planted 20% (within 5
    # points: test_auto_e2e): nearly every flip is found, and most dropped samples are flips
    assert precision >= 0.8 and recall >= 0.9


def test_report_has_one_row_per_sample_with_the_documented_schema(folder_run):
    out, _ = folder_run
    table = pq.read_table(out / "report.parquet")
    assert table.schema.remove_metadata().equals(REPORT_SCHEMA)
    assert table.num_rows == len(open_data(DIGITS).train)
    rows = table.to_pylist()
    assert all(len(row["loss_trajectory"]) == 15 for row in rows)
    assert all(row["error"] is None for row in rows)
    for row in rows:
        if row["dropped"]:
            assert row["first_dropped_epoch"] is not None or row["epochs_dropped"] == 0
        if row["first_dropped_epoch"] is None:
            assert row["epochs_dropped"] == 0
        assert row["label_name"] == row["sample_id"].split("/")[1]
        assert row["loss"] == pytest.approx(row["loss_trajectory"][-1])
        assert row["p_label"] == pytest.approx(float(np.exp(-row["loss"])), rel=1e-3, abs=1e-6)
    metadata = read_report_metadata(out / "report.parquet")
    assert metadata["class_names"] == [str(digit) for digit in range(10)]
    assert metadata["config"]["rho_max"] == "auto" and metadata["config"]["stem"] == "cifar"
    assert len(metadata["rho_schedule"]) == 15 and metadata["rho_schedule"][0] == 0.0
    assert metadata["rho_schedule"][-1] == pytest.approx(metadata["noise"]["rho_max_used"])
    assert all(epoch["heldout_accuracy"] is not None for epoch in metadata["epochs"])
    assert "labelscrub_version" in metadata


def test_manifest_holds_the_kept_samples_and_the_relabelled_ones_and_reads_back_as_input(folder_run):
    """--relabel: a dropped sample with a suggestion at least --relabel-confidence (0.95) sure stays in the manifest
    under the suggested label; one less sure does not."""
    out, output = folder_run
    report = pq.read_table(out / "report.parquet").to_pylist()
    expected, unsure = {}, 0
    for row in report:
        path = str((DIGITS / row["sample_id"]).resolve())
        if not row["dropped"]:
            expected[path] = row["label_name"]
        elif row["suggested_name"] is not None:
            if np.float32(row["suggestion_confidence"]) >= np.float32(0.95):
                expected[path] = row["suggested_name"]
            else:
                unsure += 1
    assert unsure > 0  # the floor left some suggestions out
    reread = open_data(out / "manifest.csv").train
    assert sorted((str(path), reread.class_names[label]) for path, label in zip(reread.paths, reread.labels)) == \
        sorted(expected.items())
    run = json.loads((out / "run.json").read_text())
    relabelled = sum(row["dropped"] and row["suggested_name"] not in (None, row["label_name"])
                     and np.float32(row["suggestion_confidence"]) >= np.float32(0.95) for row in report)
    assert run["counts"]["relabelled"] == relabelled > 0
    assert run["counts"]["in_manifest"] == len(expected)
    assert f"relabelled {relabelled} dropped samples" in output


def test_model_and_run_json_are_complete(folder_run):
    out, output = folder_run
    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert checkpoint["class_names"] == [str(digit) for digit in range(10)]
    assert checkpoint["state_dict"]["fc.weight"].shape == (10, 512)
    run = json.loads((out / "run.json").read_text())
    report = pq.read_table(out / "report.parquet")
    dropped = sum(report.column("dropped").to_pylist())
    assert run["counts"]["samples"] == 1438 and run["counts"]["dropped"] == dropped
    assert run["counts"]["kept"] == 1438 - dropped and run["counts"]["heldout_samples"] == 359
    assert run["heldout_accuracy"] > 0.8
    assert set(run["outputs"]) == {"report", "manifest", "model", "run"}
    assert run["throughput"]["train_images_per_second"] > 0
    assert f"dropped {dropped} ({dropped / 1438:.1%})" in output and "manifest.csv" in output
    assert "decoded 1,438 train images" in output and "decoded 359 held-out images" in output


def test_parquet_input_gives_a_parquet_manifest_with_the_input_schema(tmp_path):
    data, out = tmp_path / "digits-parquet", tmp_path / "out"
    data.mkdir()
    for split, rows in (("train", 200), ("val", 50)):  # the first rows of the sample's files, schema metadata kept
        pq.write_table(pq.read_table(DIGITS_PARQUET / f"{split}.parquet").slice(0, rows), data / f"{split}.parquet")
    result = CliRunner().invoke(cli, ["clean", str(data), "--out", str(out), "--epochs", "3",
                                      "--warmup", "1", "--ramp", "1", "--rho-max", "0.1", "--no-relabel", "--quiet"])
    assert result.exit_code == 0, result.output
    report = pq.read_table(out / "report.parquet").to_pylist()
    assert report[0]["sample_id"] == "train.parquet:0" and len(report) == 200
    assert json.loads((out / "run.json").read_text())["config"]["relabel"] is False  # --no-relabel: kept rows only
    manifest = pq.read_table(out / "manifest.parquet")
    source = pq.read_table(DIGITS_PARQUET / "train.parquet")
    assert manifest.schema.remove_metadata().equals(source.schema.remove_metadata())
    assert manifest.schema.metadata[b"huggingface"] == source.schema.metadata[b"huggingface"]
    kept_rows = [int(row["sample_id"].split(":")[1]) for row in report if not row["dropped"]]
    assert manifest.num_rows == len(kept_rows) == len(report) - int(np.ceil(0.1 * len(report)))
    assert manifest.column("id").to_pylist() == source.take(pa.array(kept_rows)).column("id").to_pylist()
    assert result.output == ""


def test_cleaning_a_manifest_again_says_its_estimate_is_a_lower_bound(tmp_path):
    """The wrong labels a manifest still holds are ones the first network believed, so a second run reads the set as
    cleaner than it is: its summary and run.json say so."""
    data = tmp_path / "digits.parquet"
    pq.write_table(pq.read_table(DIGITS_PARQUET / "train.parquet").slice(0, 120), data)
    options = ["--epochs", "2", "--warmup", "1", "--ramp", "1", "--rho-max", "0.1", "--no-audit"]
    first = CliRunner().invoke(cli, ["clean", str(data), "--out", str(tmp_path / "first"), *options, "--quiet"])
    assert first.exit_code == 0, first.output
    assert json.loads((tmp_path / "first" / "run.json").read_text())["notes"] == []
    manifest = tmp_path / "first" / "manifest.parquet"
    again = CliRunner().invoke(cli, ["clean", str(manifest), "--out", str(tmp_path / "again"), *options])
    assert again.exit_code == 0, again.output
    note = f"{manifest} is a manifest labelscrub wrote"
    assert any(line.startswith(f"note: {note}") for line in again.output.splitlines())
    assert json.loads((tmp_path / "again" / "run.json").read_text())["notes"][0].startswith(note)
