"""End to end with the defaults a user gets (conftest.folder_run): `--rho-max auto` estimates the planted noise of
the sample and drops that share, and the suggested labels of the planted flips are mostly their true labels."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FLIPPED, PLANTED_NOISE

from labelscrub.config import CleanConfig
from labelscrub.report import read_report_metadata

pytestmark = pytest.mark.e2e


def test_auto_estimates_the_planted_noise_rate_and_drops_that_share(folder_run):
    out, output = folder_run
    run = json.loads((out / "run.json").read_text())
    noise = run["noise"]
    assert noise["estimated_noise_rate"] == pytest.approx(PLANTED_NOISE, abs=0.05)
    # The ranking drops each class's decoy estimate, raised to its plausible mistakes where those were read;
    # samples confused with one other class come on top.
    classes = noise["classes"].values()
    raised = [max(entry["spread_share"], entry["mistake_share"] or 0.0) for entry in classes]
    assert noise["rho_max_used"] == pytest.approx(
        np.dot(raised, [entry["samples"] for entry in classes]) / run["counts"]["trainable"])
    # Where nothing is confused the two rates are the same sum in another order: equal up to rounding.
    rounding = 1e-12
    assert noise["spread_noise_rate"] - rounding <= noise["rho_max_used"] <= noise["estimated_noise_rate"] + rounding
    assert run["config"]["rho_max"] == "auto"
    report = pq.read_table(out / "report.parquet").to_pylist()
    confused = [row for row in report if row["confused_with"] is not None]
    assert all(row["dropped"] for row in confused)
    ranked = int(np.ceil(round(noise["rho_max_used"] * run["counts"]["trainable"], 9)))
    assert ranked <= run["counts"]["dropped"] <= ranked + len(confused)
    assert f"estimated noise rate: {noise['estimated_noise_rate']:.1%}" in output


def test_the_noise_summary_counts_every_class_and_every_dropped_sample(folder_run):
    out, _ = folder_run
    run = json.loads((out / "run.json").read_text())
    classes = run["noise"]["classes"]
    assert list(classes) == [str(digit) for digit in range(10)]
    assert sum(entry["samples"] for entry in classes.values()) == run["counts"]["trainable"]
    assert sum(entry["dropped"] for entry in classes.values()) == run["counts"]["dropped"]
    assert all(0.0 <= entry["estimated_noise_rate"] <= 1.0 for entry in classes.values())
    assert sum(cell["count"] for cell in run["noise"]["noise_matrix"]) == run["counts"]["dropped"]
    assert read_report_metadata(out / "report.parquet")["noise"] == run["noise"]


def test_suggestions_are_confident_and_mostly_the_true_label_of_planted_flips(folder_run):
    out, _ = folder_run
    report = pq.read_table(out / "report.parquet").to_pylist()
    with FLIPPED.open() as handle:
        true_label = {row["folder_sample_id"]: row["true_label"] for row in csv.DictReader(handle)}
    for row in report:
        if row["suggested_label"] is None:
            assert row["suggested_name"] is None and row["suggestion_confidence"] is None
        else:
            assert row["suggestion_confidence"] >= CleanConfig.suggest_confidence
    suggested_flips = [row for row in report if row["sample_id"] in true_label and row["suggested_name"]]
    correct = sum(row["suggested_name"] == true_label[row["sample_id"]] for row in suggested_flips)
    assert len(suggested_flips) >= 50 and correct / len(suggested_flips) >= 0.8
