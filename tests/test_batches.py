"""Batches arrive with the asked rows in the asked order, however they are loaded, and a run streamed from a
memory-mapped file through worker processes ends exactly where an in-RAM run ends."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from conftest import SAMPLE_LR
from runfolders import tiny_digits

from labelscrub.batches import auto_workers, can_fork, stream
from labelscrub.cli import cli

needs_fork = pytest.mark.skipif(not can_fork(), reason="worker processes need fork")


def numbered_images(count: int) -> np.ndarray:
    """uint8 (count, 3, 4, 4) images whose every pixel holds the image's own row number (mod 256)."""
    return np.broadcast_to((np.arange(count) % 256).astype(np.uint8)[:, None, None, None], (count, 3, 4, 4)).copy()


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=needs_fork)])
@pytest.mark.parametrize("memory_mapped", [False, True])
def test_every_batch_holds_the_asked_rows_in_the_asked_order(tmp_path, workers, memory_mapped):
    images = numbered_images(200)
    if memory_mapped:
        mapped = np.lib.format.open_memmap(tmp_path / "pixels.npy", mode="w+", dtype=np.uint8, shape=images.shape)
        mapped[:] = images
        images = mapped
    batches = [np.array([5, 3, 199, 0]), np.array([7]), np.random.default_rng(0).permutation(200)[:64]]
    got = list(stream(torch.from_numpy(images), batches, torch.device("cpu"), workers))
    assert [batch[:, 0, 0, 0].tolist() for batch in got] == [rows.tolist() for rows in batches]
    assert all(batch.dtype == torch.uint8 and batch.shape[1:] == (3, 4, 4) for batch in got)


@needs_fork
def test_workers_stream_only_large_host_held_images_to_a_cuda_gpu():
    large = torch.zeros(4, 3, 224, 224, dtype=torch.uint8)
    assert auto_workers(large, torch.device("cuda")) >= 1  # host memory, trained on a GPU
    assert auto_workers(large, torch.device("cpu")) == 0  # the CPU trains: workers would take its cores
    assert auto_workers(large, torch.device("mps")) == 0  # Apple's GPU shares host memory; no forking after MPS
    small = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
    assert auto_workers(small, torch.device("cuda")) == 0  # small rows: the in-process gather was faster


def trajectories(out):
    table = pq.read_table(out / "report.parquet").sort_by("sample_id")
    return np.array(table.column("loss_trajectory").to_pylist(), dtype=np.float32), table.column("dropped").to_pylist()


@pytest.mark.e2e
@needs_fork
def test_a_run_streamed_from_a_memory_mapped_file_matches_the_in_memory_run(tmp_path):
    # 12 images of each digit in batches of 16: eight batches an epoch, as many for the workers to hand over
    digits = tiny_digits(tmp_path / "digits", train_per_class=12, heldout_per_class=2)
    options = ["--epochs", "3", "--warmup", "1", "--ramp", "1", "--rho-max", "0.2", "--lr", SAMPLE_LR,
               "--batch-size", "16", "--quiet"]
    in_memory, streamed = tmp_path / "in-memory", tmp_path / "streamed"
    result = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(in_memory), *options])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["clean", str(digits), "--out", str(streamed), *options,
                                      "--image-memory-gb", "0", "--loader-workers", "2"])
    assert result.exit_code == 0, result.output
    losses, dropped = trajectories(in_memory)
    streamed_losses, streamed_dropped = trajectories(streamed)
    np.testing.assert_array_equal(streamed_losses, losses)
    assert streamed_dropped == dropped


@needs_fork
def test_the_processes_of_one_machine_share_its_cores_for_workers(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    large = torch.zeros(4, 3, 224, 224, dtype=torch.uint8)
    assert auto_workers(large, torch.device("cuda")) == 4  # one process: up to the cap, a core left to it
    assert auto_workers(large, torch.device("cuda"), processes_here=4) == 3  # 4 cores each, one for training
    assert auto_workers(large, torch.device("cuda"), processes_here=8) == 1  # 2 cores each: 8 + 8 workers
