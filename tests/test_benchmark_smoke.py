"""The noise benchmarks' scripts run end to end on a tiny stand-in for CIFAR-10 (the digits sample laid out as
train.parquet and test.parquet): instance-dependent noise from a reference, per-epoch dumps, the offline rules."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import DIGITS_PARQUET, ROOT

pytestmark = pytest.mark.e2e

TINY = ["--train-per-class", "12", "--test-per-class", "4", "--epochs", "5", "--device", "cpu"]


def script(name, *arguments, data, cache):
    env = {**os.environ, "LABELSCRUB_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *arguments, "--data", str(data), *TINY],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.fixture
def bench_data(tmp_path):
    """(data folder with train.parquet and test.parquet, a reference cache folder) for the scripts."""
    data = tmp_path / "digits"
    data.mkdir()
    shutil.copy(DIGITS_PARQUET / "train.parquet", data / "train.parquet")
    shutil.copy(DIGITS_PARQUET / "val.parquet", data / "test.parquet")
    cache = tmp_path / "cache"
    return data, cache


def test_instance_dependent_noise_dumps_and_offline_rules(tmp_path, bench_data):
    data, cache = bench_data

    matrix = script("reference_probs.py", "--noise", "idn20", data=data, cache=cache)
    assert matrix.returncode == 0, matrix.stderr
    assert "24 of 120 labels wrong (20.0%)" in matrix.stdout  # exactly round(0.2 x 120), the matrix below
    assert len(list(cache.glob("reference-*.npy"))) == 3  # two folds and the whole, computed once

    out = tmp_path / "dumps"
    dumps = script("epoch_dumps.py", "--noise", "idn20", "--method", "stepe", "--out", str(out), data=data,
                   cache=cache)
    assert dumps.returncode == 0, dumps.stderr
    assert "training fold" not in dumps.stdout  # the cached reference was reused
    row = json.loads((out / "row.json").read_text())
    assert row["planted"] == pytest.approx(0.2) and row["flipped"] == 24 and 0.0 <= row["auroc"] <= 1.0
    assert len(list((out / "dumps").glob("epoch-*.npz"))) == 5
    labels = np.load(out / "dumps" / "labels.npz")
    assert (labels["true"] != labels["noisy"]).sum() == 24

    rules = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "estimate_offline.py"), str(out),
                            "--windows", "1-3"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert rules.returncode == 0, rules.stderr
    estimates = json.loads(rules.stdout.splitlines()[-1].strip())
    assert estimates["window"] == "1-3" and 0.0 <= estimates["decoy"] <= 0.9

    retrained = script("retrain_runs.py", str(out / "run"), "--noise", "idn20", "--manifest", "drop", "relabel",
                       "drop+relabel", "--equal-steps", data=data, cache=cache)
    assert retrained.returncode == 0, retrained.stderr
    by_manifest = {row["manifest"]: row for row in map(json.loads, retrained.stdout.splitlines()[-3:])}
    kept = 120 - row["dropped"]
    assert by_manifest["drop"]["samples"] == kept
    assert by_manifest["relabel"]["samples"] == 120  # nothing dropped, only relabelled
    assert kept <= by_manifest["drop+relabel"]["samples"] <= 120
    for manifest in by_manifest.values():  # equal steps: epochs scale with all samples / manifest samples
        assert manifest["epochs"] == max(5, round(5 * 120 / manifest["samples"]))
        assert 0.0 <= manifest["retrain_accuracy"] <= 1.0 and 0.0 <= manifest["right_labels"] <= 1.0


def test_instance_dependent_noise_from_a_reference_trained_on_other_images(bench_data):
    data, cache = bench_data
    arguments = ["--noise", "idn40", "--reference-source", "outside", "--reference-per-class", "30"]

    first = script("reference_probs.py", *arguments, data=data, cache=cache)
    assert first.returncode == 0, first.stderr
    assert "training on 300 other images" in first.stdout  # 30 per class, none of the protocol's 120
    assert "48 of 120 labels wrong (40.0%)" in first.stdout
    assert len(list(cache.glob("reference-*.npy"))) == 1  # one network, no folds

    again = script("reference_probs.py", *arguments, data=data, cache=cache)
    assert again.returncode == 0 and "training on" not in again.stdout  # cached
    assert again.stdout.splitlines()[-12:] == first.stdout.splitlines()[-12:]  # the same matrix
