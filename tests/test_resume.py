"""Interrupt and resume: a run killed with SIGKILL mid-way and resumed ends exactly where an uninterrupted run of
the same seed ends. The cleans run on 30 images of each digit (enough for the noise and confusion estimates to be
made from every class), the retrain on a tiny run (conftest.tiny_run)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from runfolders import tiny_digits

from labelscrub.cli import cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return tiny_digits(tmp_path_factory.mktemp("digits"), train_per_class=30, heldout_per_class=5)

OPTIONS = ["--epochs", "5", "--warmup", "1", "--ramp", "2", "--rho-max", "0.2", "--seed", "7"]


def report(out):
    table = pq.read_table(out / "report.parquet").sort_by("sample_id")
    return np.array(table.column("loss_trajectory").to_pylist(), dtype=np.float32), table.column("dropped").to_pylist()


@pytest.mark.parametrize("method, extra, kill_after, confusion_epoch", [
    ("oneshot", [], "epoch 3/5", None),
    # killed in the middle of the warm-up, before auto has estimated the noise rate
    ("stepe", ["--rho-max", "auto", "--warmup", "3"], "epoch 2/5", None),
    # killed inside the confusion estimate's window (epochs 7 to 9 of 16, estimated after the 9th: 8 from 0), which
    # starts after the 6th epoch, the latest the noise estimate may wait for
    ("stepe", ["--rho-max", "auto", "--epochs", "16"], "epoch 8/16", 8),
])
def test_a_killed_run_resumes_to_the_same_result(digits, tmp_path, method, extra, kill_after, confusion_epoch):
    complete, killed = tmp_path / "complete", tmp_path / "killed"
    options = OPTIONS + ["--method", method] + extra
    result = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(complete), "--quiet", *options])
    assert result.exit_code == 0, result.output

    process = subprocess.Popen([sys.executable, "-m", "labelscrub", "clean", str(digits), "--out", str(killed),
                                *options], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:  # one line per finished epoch when not on a terminal
        if line.startswith(kill_after):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert (killed / "checkpoint.pt").exists() and not (killed / "report.parquet").exists()

    refused = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(killed), "--quiet", *options])
    assert refused.exit_code != 0 and "--overwrite" in refused.output  # never silently restarted over it

    # how batches are loaded changes speed, not results: a resume may choose it afresh
    resumed = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(killed), "--quiet", "--resume", *options,
                                       "--loader-workers", "0"])
    assert resumed.exit_code == 0, resumed.output
    expected_losses, expected_dropped = report(complete)
    losses, dropped = report(killed)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-4, atol=1e-5)
    assert dropped == expected_dropped
    assert not (killed / "checkpoint.pt").exists()
    noise = [json.loads((out / "run.json").read_text())["noise"] for out in (complete, killed)]
    assert noise[0]["estimated_noise_rate"] == pytest.approx(noise[1]["estimated_noise_rate"], abs=1e-6)
    assert noise[0]["confusion_after_epoch"] == noise[1]["confusion_after_epoch"] == confusion_epoch
    assert [entry["confused_with"] for entry in noise[0]["classes"].values()] == \
        [entry["confused_with"] for entry in noise[1]["classes"].values()]


def test_resume_with_different_options_is_refused(digits, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "labelscrub", "clean", str(digits), "--out", str(out),
                                *OPTIONS], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:
        if line.startswith("epoch 2/5"):  # the first checkpoint is on disk by now
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    changed = [*OPTIONS[:1], "6", *OPTIONS[2:]]  # --epochs 6
    result = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(out), "--resume", *changed])
    assert result.exit_code != 0 and "epochs was 5, now 6" in result.output and "Traceback" not in result.output


def test_resume_without_a_checkpoint_says_so(digits, tmp_path):
    result = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(tmp_path), "--resume"])
    assert result.exit_code != 0 and "no checkpoint.pt to resume from" in result.output


def test_a_killed_retrain_resumes_to_the_same_metrics(tiny_run, tmp_path):
    """Killed in the second seed's cleaned training: the first seed's pair is not trained again."""
    run = tiny_run.out_dir
    options = ["--compare", "--epochs", "3", "--seed", "5", "--seeds", "2"]
    complete = CliRunner().invoke(cli, ["retrain", str(run), "--out", str(tmp_path / "a"), "--quiet", *options])
    assert complete.exit_code == 0, complete.output

    killed = tmp_path / "b"
    process = subprocess.Popen([sys.executable, "-m", "labelscrub", "retrain", str(run), "--out", str(killed),
                                *options], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    finished_epochs = 0
    for line in process.stderr:
        finished_epochs += line.startswith("epoch ")
        if finished_epochs == 7:  # seed 5's pair is done, seed 6's cleaned training has 2 epochs to go
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL and (killed / "checkpoint.pt").exists()
    assert not (killed / "metrics.json").exists()
    resumed = CliRunner().invoke(cli, ["retrain", str(run), "--out", str(killed), "--resume", "--quiet", *options])
    assert resumed.exit_code == 0, resumed.output
    expected = json.loads((tmp_path / "a" / "metrics.json").read_text())
    got = json.loads((killed / "metrics.json").read_text())
    for part in ("cleaned", "noisy_baseline"):
        assert got[part]["accuracy"] == pytest.approx(expected[part]["accuracy"], abs=1e-9)
        assert got[part]["confusion_matrix"] == expected[part]["confusion_matrix"]
    assert got["seeds"]["per_seed"] == expected["seeds"]["per_seed"]


def test_ctrl_c_keeps_the_last_checkpoint_and_prints_the_resume_command(digits, tmp_path):
    out = tmp_path / "run"
    # A shell's background job inherits SIGINT as ignored; give the child the default, as a terminal would.
    process = subprocess.Popen([sys.executable, "-m", "labelscrub", "clean", str(digits), "--out", str(out),
                                *OPTIONS], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:
        if line.startswith("epoch 2/5"):
            process.send_signal(signal.SIGINT)
            break
    message = process.stderr.read()
    process.wait()
    assert process.returncode == 130
    assert "Traceback" not in message and "interrupted" in message
    assert f"labelscrub clean {digits} --out {out}" in message and message.strip().endswith("--resume")
    assert (out / "checkpoint.pt").exists() and not (out / "report.parquet").exists()
