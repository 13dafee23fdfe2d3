"""`torchrun --nproc_per_node 2` with gloo on the CPU, end to end on the digits sample: every sample reported once,
one loss per epoch, the same keep mask on both processes every epoch, a drop set close to one process's; and a
process killed mid-run ends the run with one line, after which one process resumes it to the end."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import DIGITS, ROOT, SAMPLE_LR
from runfolders import tiny_digits

EPOCHS = 6
RECIPE = ["--epochs", str(EPOCHS), "--warmup", "2", "--ramp", "2", "--rho-max", "0.2", "--lr", SAMPLE_LR, "--seed", "0",
          "--no-audit"]
# Two processes take 64 each per step, so the global batch is the single process's 128: the same recipe, its
# batches made differently. Batch-norm statistics and augmentation differ too, so the drop sets are close, not equal.
PER_PROCESS_BATCH = "64"


def environment():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(*arguments):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
            "labelscrub", *arguments]


def single(*arguments):
    return [sys.executable, "-m", "labelscrub", *arguments]


@pytest.mark.e2e
def test_two_processes_report_every_sample_once_agree_every_epoch_and_drop_what_one_process_drops(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    # both at once: together they keep the 2 cores busy
    runs = [subprocess.Popen(torchrun("clean", str(DIGITS), "--out", str(two), *RECIPE, "--batch-size",
                                      PER_PROCESS_BATCH, "--quiet"), env=environment(), stderr=subprocess.PIPE,
                             text=True),
            subprocess.Popen(single("clean", str(DIGITS), "--out", str(one), *RECIPE, "--quiet"), env=environment(),
                             stderr=subprocess.PIPE, text=True)]
    for run in runs:
        _, errors = run.communicate(timeout=900)
        assert run.returncode == 0, errors

    report = pq.read_table(two / "report.parquet").to_pydict()
    images = sorted(str(path.relative_to(DIGITS)) for path in (DIGITS / "train").rglob("*.png"))
    assert sorted(report["sample_id"]) == images  # every sample exactly once
    assert all(len(trajectory) == EPOCHS and not np.isnan(np.asarray(trajectory, dtype=float)).any()
               for trajectory in report["loss_trajectory"])
    summary = json.loads((two / "run.json").read_text())
    distributed = summary["distributed"]
    assert distributed["keep_masks_identical"] == list(range(EPOCHS))
    assert (distributed["processes"], distributed["backend"], distributed["global_batch_size"]) == (2, "gloo", 128)
    assert distributed["gather_bytes_per_epoch"] > 0 and summary["counts"]["dropped"] == 288

    alone = pq.read_table(one / "report.parquet").to_pydict()
    dropped_two, dropped_one = _dropped_ids(report), _dropped_ids(alone)
    jaccard = len(dropped_two & dropped_one) / len(dropped_two | dropped_one)
    print(f"drop sets of 2 processes and 1 process: Jaccard {jaccard:.3f}")
    assert jaccard >= 0.8


@pytest.mark.e2e
def test_a_killed_process_ends_the_run_with_one_line_and_one_process_resumes_it(tmp_path):
    # 20 images of each digit: the test needs epochs, not accuracy
    data, out = tiny_digits(tmp_path / "data", train_per_class=20, heldout_per_class=2), tmp_path / "out"
    options = ["--out", str(out), "--epochs", "4", "--warmup", "1", "--ramp", "1", "--rho-max", "0.2", "--no-audit"]
    run = subprocess.Popen(torchrun("clean", str(data), *options), env=environment(), stderr=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    for line in run.stderr:
        if line.startswith("epoch 1/4"):  # printed once the epoch's checkpoint is saved
            break
    os.kill(_worker(run.pid, rank=1), signal.SIGKILL)
    _, errors = run.communicate(timeout=120)
    assert run.returncode != 0
    ours = [line for line in errors.splitlines() if line.startswith("Error:")]
    assert len(ours) == 1, errors
    assert ours[0].startswith(f"Error: process 1 of 2 stopped; the last finished epoch is saved in {out}; "
                              "continue with: torchrun --nproc_per_node 2 -m labelscrub clean")
    assert ours[0].endswith("--resume") and "labelscrub/" not in errors  # no traceback of ours

    resumed = subprocess.run(single("clean", str(data), *options, "--resume"), env=environment(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 1/4" not in resumed.stderr and "epoch 4/4" in resumed.stderr
    report = pq.read_table(out / "report.parquet").to_pydict()
    assert len(report["sample_id"]) == 200 and all(len(trajectory) == 4 for trajectory in report["loss_trajectory"])
    assert json.loads((out / "run.json").read_text())["distributed"] is None  # finished by one process


def _dropped_ids(report: dict) -> set[str]:
    return {sample for sample, dropped in zip(report["sample_id"], report["dropped"]) if dropped}


def _worker(launcher: int, *, rank: int) -> int:
    """The process id of torchrun's worker with RANK `rank` (Linux: read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            variables = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if parent == launcher and f"RANK={rank}".encode() in variables:
            return int(entry.name)
    raise AssertionError(f"torchrun's rank {rank} process was not found")
