"""The training loop on tiny synthetic data: the schedule is applied as documented and seeded runs repeat."""

import numpy as np
import torch

from labelscrub.config import CleanConfig
from labelscrub.schedule import rho_at, select_kept
from labelscrub.train import Progress, train_step_e

N, CLASSES, SIDE = 40, 4, 8


def tiny_data(seed=0):
    generator = np.random.default_rng(seed)
    labels = np.arange(N) % CLASSES
    # Each class is a bright quadrant: learnable in a few steps.
    pixels = generator.integers(0, 60, size=(N, 3, SIDE, SIDE), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        pixels[index, :, row * 4:(row + 1) * 4, col * 4:(col + 1) * 4] = 220
    return torch.from_numpy(pixels), labels.astype(np.int64), [f"s{index:03d}" for index in range(N)]


def run(config, eligible=None, progress=None):
    pixels, labels, ids = tiny_data()
    eligible = np.ones(N, dtype=bool) if eligible is None else eligible
    return train_step_e(pixels, labels, ids, eligible, CLASSES, config.resolve(typical_side=SIDE),
                        torch.device("cpu"), progress=progress), ids


CONFIG = CleanConfig(epochs=4, warmup=1, ramp=2, rho_max=0.25, batch_size=8, seed=3)


class CountingProgress(Progress):
    def __init__(self):
        self.batches = []

    def epoch_started(self, epoch, epochs, batches):
        self.batches.append(batches)


def test_each_epoch_trains_on_the_samples_the_previous_probe_selected():
    progress = CountingProgress()
    outcome, ids = run(CONFIG, progress=progress)
    assert outcome.loss_history.shape == (4, N) and not np.isnan(outcome.loss_history).any()
    assert outcome.kept_history[0].all()
    for epoch in range(1, 4):
        rho = rho_at(epoch, rho_max=0.25, warmup=1, ramp=2)
        expected = select_kept(outcome.loss_history[epoch - 1], ids, rho)
        assert (outcome.kept_history[epoch] == expected).all()
        # dropped samples are not in the batches at all: fewer samples, fewer batches
        assert progress.batches[epoch] == -(-int(expected.sum()) // 8)
    assert [summary.dropped for summary in outcome.epochs] == [0, 5, 10, 10]
    assert (~outcome.final_kept).sum() == 10


def test_unreadable_samples_are_never_trained_on_nor_probed():
    eligible = np.ones(N, dtype=bool)
    eligible[[0, 7]] = False
    outcome, _ = run(CONFIG, eligible=eligible)
    assert not outcome.kept_history[:, [0, 7]].any()
    assert np.isnan(outcome.loss_history[:, [0, 7]]).all()
    assert not outcome.final_kept[[0, 7]].any()
    assert outcome.epochs[-1].dropped == 10  # ceil(0.25 * 38 readable samples)
    assert (~outcome.final_kept[eligible]).sum() == 10


def test_the_same_seed_gives_the_same_run_on_cpu():
    first, _ = run(CONFIG)
    second, _ = run(CONFIG)
    np.testing.assert_array_equal(first.loss_history, second.loss_history)
    np.testing.assert_array_equal(first.kept_history, second.kept_history)
    other, _ = run(CleanConfig(**{**CONFIG.to_dict(), "seed": 4}))
    assert not np.array_equal(first.loss_history, other.loss_history)
