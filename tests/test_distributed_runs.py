"""`clean` in two real gloo processes on a tiny copy of the digits (with a small network in place of ResNet-18):
what every process must agree on before training, resuming on another number of processes, and how the run ends
when one process fails."""

import json
import os
import time
from unittest import mock

import pytest
import torch.distributed as dist
from click.testing import CliRunner
from runfolders import tiny_digits
from test_methods import small_network
from twoprocesses import in_two_processes

import labelscrub
from labelscrub import checkpoint
from labelscrub.cli import cli
from labelscrub.config import CleanConfig, default_lr
from labelscrub.errors import LabelscrubError

RECIPE = ["--epochs", "3", "--warmup", "1", "--ramp", "1", "--rho-max", "0.2", "--seed", "0", "--no-audit", "--quiet"]
PER_PROCESS_BATCH = 4
# Real processes that train for seconds each: out of the fast loop, like the other trainings
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_digits(tmp_path_factory.mktemp("digits"), train_per_class=4, heldout_per_class=1)


def _command(arguments: list[str]) -> int:
    """The command line in this process, as `labelscrub ...` runs it: its exit status."""
    try:
        cli.main(arguments, prog_name="labelscrub")
    except SystemExit as done:
        return done.code
    return 0


def _clean(extra: list[str] | None = None) -> int:
    return _command(["clean", os.environ["TEST_DATA"], "--out", os.environ["TEST_OUT"], *RECIPE, "--batch-size",
                     str(PER_PROCESS_BATCH), *(extra or [])])


def _clean_where_rank_1_reads_other_labels(rank):
    opened = labelscrub.pipeline.open_data

    def open_with_other_labels(*arguments, **options):
        split = opened(*arguments, **options)
        if rank == 1:  # as if this machine's copy of DATA had one label changed
            split.train.labels[0] = (split.train.labels[0] + 1) % len(split.train.class_names)
        return split

    with mock.patch("labelscrub.pipeline.open_data", open_with_other_labels):
        return _clean()


def test_a_process_that_reads_other_labels_is_named_before_training(data, tmp_path):
    outcomes = in_two_processes(_clean_where_rank_1_reads_other_labels, tmp_path, process_group=False,
                                TEST_DATA=str(data), TEST_OUT=str(tmp_path / "out"))
    assert [outcome.value for outcome in outcomes] == [1, 1]
    assert outcomes[0].stderr.splitlines() == [
        "Error: process 1 of 2 does not read what process 0 reads (the samples or their labels differ); every "
        "process must see DATA at the same path, with the same files, and get the same options"]
    assert outcomes[1].stderr == ""  # said once, by process 0
    assert not (tmp_path / "out" / checkpoint.CHECKPOINT_NAME).exists()  # no epoch was trained


def _clean_leaving_the_first_epochs_checkpoint(rank):
    """A run of two processes that ends as if it had been stopped after its first epoch: its later checkpoints
    are not written and the first is not removed at the end."""
    save = checkpoint.save

    def save_the_first(out, payload):
        if payload["epoch"] == 0:
            save(out, payload)

    with mock.patch("labelscrub.checkpoint.save", save_the_first), mock.patch("labelscrub.checkpoint.remove"):
        return _clean()


def test_a_run_of_two_processes_resumed_in_one_keeps_its_global_batch_and_learning_rate(data, tmp_path):
    out = tmp_path / "out"
    outcomes = in_two_processes(_clean_leaving_the_first_epochs_checkpoint, tmp_path, process_group=False,
                                TEST_DATA=str(data), TEST_OUT=str(out))
    assert [outcome.value for outcome in outcomes] == [0, 0], outcomes[0].stderr
    made = []

    def recording(*arguments, **options):
        made.append(arguments[4])  # the config the training is set up with
        return real_make_setup(*arguments, **options)

    real_make_setup = labelscrub.task.make_setup
    with mock.patch("labelscrub.train.build_model", small_network), \
            mock.patch("labelscrub.task.make_setup", recording), mock.patch.dict(os.environ, TEST_DATA=str(data),
                                                                                  TEST_OUT=str(out)):
        assert _clean(["--resume"]) == 0
    global_batch = 2 * PER_PROCESS_BATCH
    assert [(config.batch_size, config.lr) for config in made] == [(global_batch, default_lr(PER_PROCESS_BATCH, 2))]
    recorded = json.loads((out / "run.json").read_text())["config"]
    assert (recorded["batch_size"], recorded["lr"]) == (global_batch, default_lr(global_batch))


def test_a_restarted_run_that_finds_no_checkpoint_says_it_starts_over(data, tmp_path):
    # torchrun's environment for one process restarted once, on a machine whose --out holds nothing; the store
    # torchrun's agent would host is hosted here
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    restarted = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(store.port), "TORCHELASTIC_USE_AGENT_STORE": "True",
                 "TORCHELASTIC_RESTART_COUNT": "1", "TORCHELASTIC_MAX_RESTARTS": "3"}
    out = tmp_path / "out"
    with mock.patch("labelscrub.train.build_model", small_network):
        result = CliRunner().invoke(cli, ["clean", str(data), "--out", str(out), *RECIPE[:-1], "--epochs", "1"],
                                    env=restarted)
    assert result.exit_code == 0, result.output
    assert (f"warning: torchrun restarted the processes (restart 1) and found no checkpoint in {out}: starting "
            "again from the first epoch (no epoch had finished, or --out is not on a filesystem every machine "
            "sees)") in result.output.splitlines()


def test_a_global_batch_the_processes_cannot_share_equally_is_refused():
    saved = {"global_batch": 8, "lr": 0.05}
    config = CleanConfig(batch_size=4, lr=None).resolve(32, processes=2)
    assert checkpoint.keep_global_batch(config, saved, 4).batch_size == 2
    with pytest.raises(LabelscrubError, match="cannot resume on 3 processes: the run trains with a global batch of 8"):
        checkpoint.keep_global_batch(config, saved, 3)




# --- one process fails in the middle of an epoch ---

INJECTED = {"RuntimeError": RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)"),
            "LabelscrubError": LabelscrubError("the disk is full (injected by the test)")}


def _clean_failing_in_the_second_epoch(rank):
    """`clean` with 5 steps per epoch on each process; process TEST_FAILING raises TEST_ERROR at its 8th batch."""
    augmented, batches = labelscrub.train._augmented, []

    def failing(*arguments):
        batches.append(1)
        if rank == int(os.environ["TEST_FAILING"]) and len(batches) == 8:
            raise INJECTED[os.environ["TEST_ERROR"]]
        return augmented(*arguments)

    with mock.patch("labelscrub.train._augmented", failing):
        return _clean()


@pytest.mark.parametrize("failing, error", [(1, "RuntimeError"), (0, "RuntimeError"), (1, "LabelscrubError")])
def test_a_process_that_fails_says_why_and_the_other_ends_quietly(data, tmp_path, failing, error):
    started = time.monotonic()
    outcomes = in_two_processes(_clean_failing_in_the_second_epoch, tmp_path, process_group=False, timeout=100,
                                TEST_DATA=str(data), TEST_OUT=str(tmp_path / "out"), TEST_FAILING=str(failing),
                                TEST_ERROR=error)
    assert time.monotonic() - started < 100  # nobody waited for a collective's timeout (10 minutes)
    failed, other = outcomes[failing], outcomes[1 - failing]
    if error == "RuntimeError":  # not labelscrub's: the cause, with its traceback, as in one process
        assert failed.error == f"RuntimeError: {INJECTED[error]}" and str(INJECTED[error]) in failed.stderr
    else:
        where = "process 1: " if failing else ""
        assert failed.value == 1 and failed.stderr.splitlines() == [f"Error: {where}{INJECTED[error]}"]
    assert other.value == 1 and other.stderr == ""  # said once, by the process that failed
    assert not any("stopped" in outcome.stderr for outcome in outcomes)
    assert (tmp_path / "out" / checkpoint.CHECKPOINT_NAME).exists()  # the first epoch can be resumed
