"""End to end: `labelscrub retrain` on the sample's clean run and on a tiny one, and every `clean --method` on a
slice of the sample."""

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from conftest import PLANTED_NOISE
from runfolders import tiny_digits

from labelscrub.cli import cli
from labelscrub.report import read_report_metadata

pytestmark = pytest.mark.e2e


def test_retrain_trains_on_the_whole_runs_manifest_and_tests_on_its_held_out_split(folder_run, tmp_path):
    """The full sample's manifest, relabelled samples included, against its 359 held-out images. (--compare is
    tested on a tiny run in test_apply.py; whether the cleaned labels train a better model is measured by the
    benchmarks on CIFAR-10, where the difference is larger than one run's noise: BENCHMARKS.md.)"""
    run, _ = folder_run
    result = CliRunner().invoke(cli, ["retrain", str(run), "--epochs", "1", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    cleaned = metrics["cleaned"]
    in_manifest = json.loads((run / "run.json").read_text())["counts"]["in_manifest"]
    assert cleaned["train_samples"] == in_manifest and cleaned["test_samples"] == 359 and cleaned["epochs"] == 1
    assert sum(map(sum, cleaned["confusion_matrix"])) == 359
    assert metrics["config"]["lr"] == 0.02 and "noisy_baseline" not in metrics  # the run's recipe
    assert f"{cleaned['accuracy']:.2%}" in result.output
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["config"]["method"] == "erm" and len(checkpoint["class_names"]) == 10


def test_retrain_takes_a_manifest_file_options_override_the_recipe(tiny_run, tmp_path):
    heldout = Path(tiny_run.summary["data"]) / "val"
    result = CliRunner().invoke(cli, ["retrain", str(tiny_run.manifest_path), "--test", str(heldout),
                                      "--epochs", "2", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["cleaned"]["epochs"] == 2 and metrics["config"]["stem"] == "cifar"
    assert metrics["config"]["batch_size"] == 32 and "noisy_baseline" not in metrics  # the rest from the run
    assert metrics["cleaned"]["test_samples"] == 40


def test_equal_steps_gives_the_kept_samples_as_many_steps_as_all_samples(tiny_run, tmp_path):
    run = tiny_run.out_dir
    in_manifest = tiny_run.summary["counts"]["in_manifest"]
    result = CliRunner().invoke(cli, ["retrain", str(run), "--equal-steps", "--epochs", "3",
                                      "--out", str(tmp_path / "retrain"), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "retrain" / "metrics.json").read_text())
    assert in_manifest < 120 and metrics["cleaned"]["epochs"] == round(3 * 120 / in_manifest)
    # a manifest away from its clean run has no sample count to match
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "manifest.csv").write_text(tiny_run.manifest_path.read_text())
    result = CliRunner().invoke(cli, ["retrain", str(tmp_path / "alone" / "manifest.csv"), "--equal-steps",
                                      "--test", str(Path(tiny_run.summary["data"]) / "val"),
                                      "--out", str(tmp_path / "other")])
    assert result.exit_code != 0 and "--equal-steps needs" in result.output and "Traceback" not in result.output


def test_seeds_repeat_both_trainings_and_report_their_mean_and_range(tiny_run, tmp_path):
    """One training moves by about a point from seed to seed: --seeds repeats the cleaned and the baseline
    training, and its first seed is exactly a plain --compare run of that seed (the model it saves)."""
    run = tiny_run.out_dir
    options = ["--compare", "--epochs", "2", "--seed", "3", "--quiet"]
    single = CliRunner().invoke(cli, ["retrain", str(run), "--out", str(tmp_path / "one"), *options])
    repeated = CliRunner().invoke(cli, ["retrain", str(run), "--out", str(tmp_path / "three"), "--seeds", "3",
                                        *options])
    assert single.exit_code == 0 and repeated.exit_code == 0, single.output + repeated.output
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    three = json.loads((tmp_path / "three" / "metrics.json").read_text())
    assert "seeds" not in one and "--seeds 3 repeats both trainings" in single.output
    per_seed = three["seeds"]["per_seed"]
    assert [entry["seed"] for entry in per_seed] == [3, 4, 5]
    assert per_seed[0]["accuracy"] == one["cleaned"]["accuracy"] == three["cleaned"]["accuracy"]
    assert per_seed[0]["baseline_accuracy"] == one["noisy_baseline"]["accuracy"]
    differences = [entry["accuracy"] - entry["baseline_accuracy"] for entry in per_seed]
    assert three["seeds"]["difference"]["mean"] == pytest.approx(sum(differences) / 3)
    assert three["seeds"]["difference"]["min"] == pytest.approx(min(differences))
    assert three["seeds"]["accuracy"]["max"] == max(entry["accuracy"] for entry in per_seed)
    assert "over 3 seeds (3-5): kept samples" in repeated.output and "difference over the seeds" in repeated.output
    # the saved model is the first seed's, the only one the checkpoint carried weights of
    assert torch.load(tmp_path / "three" / "model.pt", weights_only=True)["config"]["seed"] == 3
    bad = CliRunner().invoke(cli, ["retrain", str(run), "--seeds", "0"])
    assert bad.exit_code != 0 and "--seeds" in bad.output and "Traceback" not in bad.output


def test_retrain_without_a_manifest_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["retrain", str(tmp_path)])
    assert result.exit_code != 0 and "no manifest" in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """12 images of each digit: 120 to clean in batches of 32."""
    return tiny_digits(tmp_path_factory.mktemp("digits"), train_per_class=12, heldout_per_class=2)


@pytest.mark.parametrize("method", ["stepe", "erm", "truncation", "spl", "oneshot"])
def test_every_method_writes_the_same_outputs(method, digits, tmp_path):
    result = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(tmp_path), "--method", method,
                                      "--epochs", "3", "--warmup", "1", "--ramp", "1", "--batch-size", "32",
                                      "--rho-max", str(PLANTED_NOISE), "--quiet"])
    assert result.exit_code == 0, result.output
    report = pq.read_table(tmp_path / "report.parquet")
    dropped = sum(report.column("dropped").to_pylist())
    expected_rows = 3 + (1 if method == "oneshot" else 0)  # oneshot: the ranking epoch, then a fresh run
    assert all(len(row) == expected_rows for row in report.column("loss_trajectory").to_pylist())
    if method == "erm":
        assert dropped == 0
    elif method == "spl":
        assert 0 < dropped < 120
    else:
        assert dropped == math.ceil(PLANTED_NOISE * 120)
    metadata = read_report_metadata(tmp_path / "report.parquet")
    assert metadata["method"] == method and metadata["config"]["method"] == method
    manifest_rows = sum(1 for _ in (tmp_path / "manifest.csv").open()) - 1
    counts = json.loads((tmp_path / "run.json").read_text())["counts"]  # relabel is on: some dropped may be back
    assert manifest_rows == counts["in_manifest"] == 120 - dropped + counts["relabelled"] + counts["restored"]
