"""The training epoch's own loss measurement: what it records and that measuring never trains."""

import numpy as np
import pytest
import torch
from test_methods import CLASSES, SIDE, N, tiny_data

from labelscrub.config import CleanConfig
from labelscrub.train import make_setup, probe, shuffled_batches, train_epoch

CONFIG = CleanConfig(epochs=3, batch_size=8, seed=3).resolve(typical_side=SIDE)


def fresh_setup():
    pixels, labels, _ = tiny_data()
    return make_setup(pixels, labels, np.ones(N, dtype=bool), CLASSES, CONFIG, torch.device("cpu")), labels


def test_an_epoch_records_every_sample_kept_or_left_out():
    setup, labels = fresh_setup()
    kept = np.arange(N) % 3 != 0
    training = train_epoch(setup, kept, 0, schedule_epochs=3, record=np.ones(N, dtype=bool))
    measured = training.measured
    assert not np.isnan(measured.losses).any() and (measured.predicted >= 0).all()
    np.testing.assert_allclose(measured.p_label, np.exp(-measured.losses), rtol=1e-5)


def test_measuring_left_out_samples_changes_nothing_in_the_model():
    setup, _ = fresh_setup()
    before = {name: value.clone() for name, value in setup.model.state_dict().items()}
    nothing_kept = np.zeros(N, dtype=bool)
    training = train_epoch(setup, nothing_kept, 0, schedule_epochs=3, record=np.ones(N, dtype=bool))
    assert not np.isnan(training.measured.losses).any()
    for name, value in setup.model.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(value, before[name]), name  # weights and batch-norm running statistics


@pytest.fixture(scope="module")
def trained():
    """A setup after one epoch on every sample; probing it changes nothing, so the tests share it."""
    setup, labels = fresh_setup()
    train_epoch(setup, np.ones(N, dtype=bool), 0, schedule_epochs=3)
    return setup, labels


def test_margin_is_positive_exactly_where_the_model_prefers_another_class(trained):
    setup, labels = trained
    result = probe(setup, setup.pixels, labels, np.arange(N))
    assert ((result.margin > 0) == (result.predicted != labels)).all()


def test_the_probe_measures_each_training_sample_decoy_and_no_decoy_for_other_images(trained):
    setup, labels = trained
    result = probe(setup, setup.pixels, labels, np.arange(N), keep_probabilities=True)
    decoys = setup.decoys.numpy()
    assert (decoys != labels).all()
    expected = -np.log(result.probabilities[np.arange(N), decoys])
    np.testing.assert_allclose(result.decoy_loss, expected, rtol=1e-4)

    other_images = setup.pixels.clone()  # held-out images have no decoys
    assert np.isnan(probe(setup, other_images, labels, np.arange(N)).decoy_loss).all()


def test_no_training_batch_is_a_small_tail_and_every_kept_sample_trains_once():
    generator = torch.Generator().manual_seed(0)
    for kept_count in (9475, 9500, 9858, 129, 127, 64, 3):  # tails of 3, 28, 2, 1 and single short batches
        batches = shuffled_batches(np.arange(kept_count), 128, generator)
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(kept_count))
        if len(batches) > 1:
            assert min(len(batch) for batch in batches) >= 64


def test_a_step_with_a_nan_gradient_is_skipped_and_the_weights_stay_finite():
    # what the CPU's oneDNN convolution has done now and then for small feature maps
    setup, _ = fresh_setup()
    first_conv = setup.model.conv1.weight
    poisoned = {"steps": 0}

    def nan_on_the_first_two_steps(gradient):
        poisoned["steps"] += 1
        return torch.full_like(gradient, float("nan")) if poisoned["steps"] <= 2 else gradient

    first_conv.register_hook(nan_on_the_first_two_steps)
    before = first_conv.detach().clone()
    training = train_epoch(setup, np.ones(N, dtype=bool), 0, schedule_epochs=3)
    assert training.skipped_steps == 2 and poisoned["steps"] > 2  # the later steps trained
    assert all(torch.isfinite(parameter).all() for parameter in setup.model.parameters())
    assert not torch.equal(first_conv.detach(), before)
