"""Several processes (distributed.py): torchrun's environment, the shares, the learning rate rule, the fingerprint,
and two real gloo processes combining measurements and training on tiny data with sample counts the processes do
not divide."""

import math
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from runfolders import tiny_digits
from test_methods import CLASSES, CONFIG, SIDE, N, tiny_data
from twoprocesses import in_two_processes, values

from labelscrub import checkpoint
from labelscrub.cli import _stopped_message, cli
from labelscrub.config import REFERENCE_LR, CleanConfig
from labelscrub.decoding import _decode_once_per_machine
from labelscrub.distributed import Launch, Processes
from labelscrub.errors import FailedOnMain, LabelscrubError, ProcessStopped
from labelscrub.methods import train_with_method
from labelscrub.outfolder import prepare_out_dir
from labelscrub.sources import open_data
from labelscrub.task import Task
from labelscrub.train import make_setup, probe, train_epoch

TORCHRUN = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
            "TORCHELASTIC_RESTART_COUNT": "2", "TORCHELASTIC_MAX_RESTARTS": "3"}


def test_torchruns_environment_is_read_and_its_absence_means_one_process():
    launch = Launch.from_environment(TORCHRUN)
    assert (launch.processes, launch.rank, launch.local_rank, launch.local_processes, launch.node) == (4, 3, 1, 2, 1)
    assert (launch.restarts, launch.max_restarts) == (2, 3)
    assert Launch.from_environment({"PATH": "/bin"}) is None
    minimal = Launch.from_environment({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert (minimal.local_processes, minimal.node, minimal.restarts) == (2, 0, 0)


def processes_at(rank, size):
    """A rank's view for the pure methods (no process group is needed for shares)."""
    launch = Launch(processes=size, rank=rank, local_rank=rank, local_processes=size, node=0, restarts=0,
                    max_restarts=0)
    return Processes(torch.device("cpu"), launch, "gloo")


@pytest.mark.parametrize("count,size", [(7, 2), (7, 3), (2, 3), (1438, 2), (0, 2)])
def test_training_shares_are_equal_and_first_appearances_cover_every_sample_once(count, size):
    order = np.random.default_rng(0).permutation(count) + 100
    shares = [processes_at(rank, size).training_share(order) for rank in range(size)]
    assert len({len(rows) for rows, _ in shares}) == 1  # every rank takes as many steps
    assert len(shares[0][0]) == math.ceil(count / size)
    first = np.concatenate([rows[seen] for rows, seen in shares])
    assert sorted(first.tolist()) == sorted(order.tolist())  # measured exactly once
    repeats = np.concatenate([rows[~seen] for rows, seen in shares])
    assert len(repeats) == math.ceil(count / size) * size - count and set(repeats) <= set(order[:len(repeats)])


def test_measuring_shares_split_the_rows_without_overlap():
    rows = np.arange(11) * 3
    shares = [processes_at(rank, 3).share(rows) for rank in range(3)]
    assert sorted(np.concatenate(shares).tolist()) == rows.tolist() and [len(s) for s in shares] == [4, 4, 3]


def test_one_process_keeps_the_single_path():
    one = Processes.single()
    order = np.array([3, 1, 2])
    rows, seen = one.training_share(order)
    assert rows is order and seen is None and one.share(order) is order
    shared = torch.Generator()
    assert one.augmentation_generator(shared, 0, 5) is shared and one.summary(CleanConfig()) is None


def test_ranks_augment_differently_and_repeatably_per_epoch():
    shared = torch.Generator().manual_seed(0)
    draws = {(rank, epoch): torch.rand(3, generator=processes_at(rank, 2).augmentation_generator(shared, 7, epoch))
             for rank in range(2) for epoch in range(2)}
    assert not torch.equal(draws[0, 0], draws[1, 0]) and not torch.equal(draws[0, 0], draws[0, 1])
    again = torch.rand(3, generator=processes_at(1, 2).augmentation_generator(shared, 7, 0))
    assert torch.equal(again, draws[1, 0])


def test_the_default_learning_rate_follows_the_global_batch_and_a_given_one_is_kept():
    assert CleanConfig(batch_size=64).resolve(32).lr == pytest.approx(REFERENCE_LR * 64 / 128)
    assert CleanConfig(batch_size=64).resolve(32, processes=8).lr == pytest.approx(REFERENCE_LR * 64 * 8 / 128)
    assert CleanConfig(batch_size=64, lr=0.03).resolve(32, processes=8).lr == 0.03


def test_the_fingerprint_does_not_depend_on_the_number_of_processes():
    given = CleanConfig(epochs=5)

    def fingerprint(processes):
        config = given.resolve(32, processes=processes)
        return checkpoint.fingerprint(data="/d", config=checkpoint.as_given(config, given), sample_ids=["a"],
                                      labels=np.array([0]))

    assert given.resolve(32, processes=4).lr != given.resolve(32).lr
    assert fingerprint(1) == fingerprint(4)
    with_lr = CleanConfig(epochs=5, lr=0.05)
    assert checkpoint.as_given(with_lr.resolve(32), with_lr)["lr"] == 0.05  # a given rate must still match


def test_torchrun_on_apples_mps_is_refused_in_one_line_by_each_machines_first_process(monkeypatch, tmp_path):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setattr("labelscrub.distributed.pick_device", lambda requested: torch.device("mps"))
    said = {}
    for local_rank in (0, 1):
        environment = {"WORLD_SIZE": "2", "RANK": str(local_rank), "LOCAL_RANK": str(local_rank)}
        said[local_rank] = CliRunner().invoke(cli, ["clean", str(tmp_path), "--out", str(tmp_path / "out")],
                                              env=environment)
    assert said[0].exit_code == 1 and said[0].output.splitlines() == [
        "Error: --device auto chose Apple's MPS, which torchrun cannot use (no process group runs on MPS); run in "
        "one process, or pass --device cpu to train on the CPU under torchrun"]
    assert said[1].exit_code == 1 and said[1].output == ""  # the same error: said once


def test_processes_that_map_the_decoded_file_get_it_read_only(tmp_path):
    images = open_data(tiny_digits(tmp_path / "data", train_per_class=2, heldout_per_class=1)).train
    config = CleanConfig(image_size=8)
    decoded = {}
    for rank in (0, 1):  # on one machine local rank 0 decodes, then rank 1 maps what it wrote
        errors = [None] * len(images)
        with mock.patch.object(Processes, "gather_objects", return_value=[errors, None]):
            decoded[rank], _ = _decode_once_per_machine(images, config, tmp_path / "train.npy",
                                                        processes_at(rank, 2), None)
    assert not decoded[1].flags.writeable
    np.testing.assert_array_equal(decoded[1], decoded[0])


# --- two real processes (gloo) ---

def _combine(processes):
    count = 7
    mine = processes.share(np.arange(count))
    losses = torch.full((count,), float("nan"))
    losses[mine] = torch.from_numpy(mine).float() + 0.5
    predicted = torch.full((count,), -1, dtype=torch.int64)
    predicted[mine] = torch.from_numpy(mine) * 10
    # allocated by rank 1 only (a tensor made at the first record): rank 0 must still take part
    probabilities = torch.full((count, 2), float("nan")) if processes.rank == 1 else None
    if probabilities is not None:
        probabilities[mine] = 0.25
    combined = processes.combine_rows({"losses": losses, "predicted": predicted, "probabilities": probabilities},
                                      count, mine)
    errors = []
    try:
        processes.from_main(lambda: (_ for _ in ()).throw(LabelscrubError("the folder is not empty")))
    except FailedOnMain as error:
        errors.append(("elsewhere", str(error)))
    except LabelscrubError as error:
        errors.append(("here", str(error)))
    try:  # not labelscrub's error: the others must not wait for rank 0's answer either
        processes.from_main(lambda: Path(os.devnull, "missing").read_text())
    except FailedOnMain as error:
        errors.append(("elsewhere", str(error)))
    except OSError as error:
        errors.append(("here", type(error).__name__))
    kept = np.arange(count) % 2 == 0
    processes.check_same(kept, 0)
    try:
        processes.check_same(kept if processes.rank == 0 else ~kept, 1)
    except LabelscrubError as error:
        errors.append(("masks", str(error)))
    total = processes.sum([1.0, float(processes.rank)])
    stats = (processes.stats.bytes, list(processes.stats.keep_checks))  # before the training below adds to them
    exact = processes.combine_rows({"values": torch.from_numpy(_special_values(mine))}, count, mine)["values"]
    return {name: value.numpy() for name, value in combined.items()}, errors, total, stats, exact.numpy()


# Values a measurement can hold that a combination through sentinels or a MAX would change: -inf, +inf, a NaN with
# a payload, -0.0, the smallest subnormal, the largest float32, and an ordinary 3.0.
SPECIAL_BITS = np.array([0xFF800000, 0x7F800000, 0x7FC00001, 0x80000000, 0x00000001, 0x7F7FFFFF, 0x40400000],
                        dtype=np.uint32)


def _special_values(measured_rows):
    """Per row its special value where this rank measured it, elsewhere a stale 7.0 the others must overwrite."""
    values = np.full(len(SPECIAL_BITS), 7.0, dtype=np.float32)
    values[measured_rows] = SPECIAL_BITS.view(np.float32)[measured_rows]
    return values


def _both(processes):
    return _combine(processes), _train_and_probe(processes)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """What each of two gloo processes found, by rank: one start-up for both tests (a spawned process imports
    torch again, which takes seconds)."""
    return values(in_two_processes(_both, tmp_path_factory.mktemp("two-processes")))


def test_two_processes_combine_every_row_from_the_rank_that_measured_it(two_processes):
    results = [combined[:4] for combined, _ in two_processes]
    for combined, errors, total, stats in results:
        np.testing.assert_array_equal(combined["losses"], np.arange(7) + 0.5)
        np.testing.assert_array_equal(combined["predicted"], np.arange(7) * 10)
        np.testing.assert_array_equal(combined["probabilities"][1::2], 0.25)  # rank 1's rows
        assert np.isnan(combined["probabilities"][0::2]).all()  # rank 0 measured none of them
        assert errors[0][1] == "the folder is not empty" and "disagree" in errors[2][1]
        # each rank sends as many rows as the longest share (4): their indices, 3 float32 and 1 int64 column
        assert total == [2.0, 1.0] and stats == (4 * 8 + 4 * 3 * 4 + 4 * 8, [0])
    assert [errors[0][0] for _, errors, _, _ in results] == ["here", "elsewhere"]
    assert [errors[1] for _, errors, _, _ in results][0] == ("here", "NotADirectoryError")
    assert [errors[1] for _, errors, _, _ in results][1][0] == "elsewhere"  # ended at once, told by rank 0


def test_two_processes_combine_infinities_and_nan_bit_for_bit(two_processes):
    for (*_, exact), _ in two_processes:
        np.testing.assert_array_equal(exact.view(np.uint32), SPECIAL_BITS)


def _train_and_probe(processes):
    pixels, labels, ids = tiny_data()
    eligible = np.arange(N) != 5  # one unreadable sample
    config = CleanConfig(epochs=2, batch_size=4, seed=3).resolve(typical_side=SIDE, processes=processes.size)
    setup = make_setup(pixels, labels, eligible, CLASSES, config, torch.device("cpu"), processes=processes)
    kept = eligible & (np.arange(N) % 3 != 0)  # 26 samples: 13 per rank, the last batch of each rank merged
    training = train_epoch(setup, kept, 0, schedule_epochs=2, record=eligible)
    probed = probe(setup, pixels, labels, np.arange(0, N, 3))  # 14 rows: uneven by batch, even by rank
    weights = torch.cat([value.flatten() for value in setup.model.state_dict().values() if value.is_floating_point()])
    task = Task(pixels=pixels, labels=labels, sample_ids=ids, eligible=eligible, num_classes=CLASSES,
                config=CONFIG.resolve(typical_side=SIDE), device=torch.device("cpu"), processes=processes)
    outcome = train_with_method(task)
    return training.measured, probed, weights.numpy(), outcome.kept_history, outcome.final_kept, processes.stats


def test_two_processes_train_on_shares_measure_each_sample_once_and_agree(two_processes):
    (first, probed, weights, kept_history, final_kept, stats), other = (trained for _, trained in two_processes)
    eligible = np.arange(N) != 5
    assert not np.isnan(first.losses[eligible]).any() and np.isnan(first.losses[5])
    assert (first.predicted[eligible] >= 0).all() and first.predicted[5] == -1
    assert not np.isnan(first.decoy_loss[eligible]).any()
    rows = np.arange(0, N, 3)
    assert not np.isnan(probed.losses[rows]).any() and np.isnan(np.delete(probed.losses, rows)).all()
    np.testing.assert_array_equal(other[2], weights)  # DDP kept the replicas equal
    for mine, theirs in zip((first, probed), other[:2]):
        np.testing.assert_array_equal(mine.losses, theirs.losses)
    np.testing.assert_array_equal(other[3], kept_history)
    np.testing.assert_array_equal(other[4], final_kept)
    assert stats.keep_checks == [0, 0, 0, 1, 2, 3]  # _combine's check, the epoch above, then the method's four
    assert kept_history[-1].sum() < eligible.sum()  # the schedule did leave samples out


def test_a_stopped_process_is_named_with_the_command_that_continues_on_any_number_of_processes(tmp_path):
    launch = Launch.from_environment({**TORCHRUN, "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "0"})
    (tmp_path / checkpoint.CHECKPOINT_NAME).write_bytes(b"")
    with mock.patch("sys.argv", ["labelscrub", "clean", "data", "--out", str(tmp_path), "--overwrite"]):
        message = _stopped_message(ProcessStopped([2], 4, reporter=True), str(tmp_path), launch)
    assert message.startswith(f"process 2 of 4 stopped; the last finished epoch is saved in {tmp_path}; ")
    assert message.endswith(f"-m labelscrub clean data --out {tmp_path} --resume") and "--nnodes 2" in message
    restarting = Launch.from_environment({**TORCHRUN, "TORCHELASTIC_RESTART_COUNT": "0"})
    assert "torchrun restarts the processes" in _stopped_message(ProcessStopped(None, 4, reporter=True),
                                                                 str(tmp_path), restarting)
    (tmp_path / checkpoint.CHECKPOINT_NAME).unlink()
    assert "before the first epoch finished" in _stopped_message(ProcessStopped([0], 4, reporter=True),
                                                                 str(tmp_path), launch)


def test_processes_restarted_by_torchrun_resume_from_a_checkpoint_or_start_again_over_the_first_attempt(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    (out / ".labelscrub-cache").mkdir()  # what a killed first attempt leaves before its first epoch ends
    assert prepare_out_dir(out, data, overwrite=False, restarted=True) is False
    (out / checkpoint.CHECKPOINT_NAME).write_bytes(b"")
    assert prepare_out_dir(out, data, overwrite=False, restarted=True) is True
    with pytest.raises(LabelscrubError, match="not empty"):  # without torchrun's restart nothing is assumed
        prepare_out_dir(out, data, overwrite=False)
