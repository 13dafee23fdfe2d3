"""Training augmentation: which one a run gets, and what each does to a batch."""

from unittest import mock

import numpy as np
import pytest
import torch
from test_methods import small_network

from labelscrub.augment import (
    channel_stats,
    for_training_side,
    normalize,
    random_crop_flip,
    random_resized_crop_flip,
)
from labelscrub.config import CleanConfig
from labelscrub.train import make_setup


def batch(count=16, side=32, seed=0):
    return torch.randint(0, 256, (count, 3, side, side), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("side, expected", [(32, random_crop_flip), (64, random_crop_flip),
                                            (96, random_resized_crop_flip), (224, random_resized_crop_flip)])
def test_the_training_side_picks_the_augmentation_whatever_the_stem(stem, side, expected):
    config = CleanConfig(stem=stem, image_size=side).resolve(typical_side=side)
    pixels = batch(4, side)
    with mock.patch("labelscrub.train.build_model", small_network):  # the network plays no part here
        setup = make_setup(pixels, np.arange(4) % 2, np.ones(4, bool), 2, config, torch.device("cpu"))
    assert setup.augment is expected is for_training_side(side)


@pytest.mark.parametrize("augment", [random_crop_flip, random_resized_crop_flip])
def test_augmented_batches_keep_shape_dtype_and_pixel_range(augment):
    images = batch().float()
    out = augment(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 255
    assert not torch.equal(out, images)  # something moved


@pytest.mark.parametrize("augment", [random_crop_flip, random_resized_crop_flip])
def test_the_same_seed_gives_the_same_batch_and_another_seed_another(augment):
    images = batch().float()
    first = augment(images, torch.Generator().manual_seed(7))
    again = augment(images, torch.Generator().manual_seed(7))
    other = augment(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("augment", [random_crop_flip, random_resized_crop_flip])
def test_one_generator_gives_each_batch_its_own_draw(augment):
    generator = torch.Generator().manual_seed(7)
    images = batch().float()
    assert not torch.equal(augment(images, generator), augment(images, generator))


@pytest.mark.parametrize("augment", [random_crop_flip, random_resized_crop_flip])
def test_every_image_is_cut_from_itself_with_its_channels_in_place(augment):
    # Solid images, a different colour per image and channel: any mixing of images or channels changes a colour.
    colours = torch.randint(0, 256, (16, 3, 1, 1), generator=torch.Generator().manual_seed(2)).float()
    images = colours.expand(16, 3, 32, 32).contiguous()
    out = augment(images, torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, images, atol=1e-3, rtol=0)


def test_padded_crop_shifts_by_at_most_an_eighth_of_the_side():
    # A horizontal ramp: a shift of the crop shows up as a constant offset of every row (flips reverse it).
    side, pad = 32, 4
    ramp = torch.arange(side, dtype=torch.float32).repeat(64, 3, side, 1)
    out = random_crop_flip(ramp, torch.Generator().manual_seed(0))
    middle = out[:, 0, side // 2, pad:side - pad]  # away from the reflected border
    steps = middle[:, 1:] - middle[:, :-1]
    assert set(steps.unique().tolist()) <= {-1.0, 1.0}  # each row stays a ramp, maybe mirrored
    forward = steps[:, 0] > 0
    offsets = torch.where(forward, middle[:, 0] - pad, (side - 1 - pad) - middle[:, 0])
    assert offsets.abs().max() <= pad and len(offsets.unique()) > 3
    assert 0.2 < forward.float().mean() < 0.8  # about half flipped


def test_resized_crop_keeps_at_least_eight_percent_of_the_area_scaled_up():
    # A single bright pixel in a dark image: zoomed in, it spreads over many output pixels or drops out.
    images = torch.zeros(200, 3, 32, 32)
    images[:, :, 16, 16] = 255
    out = random_resized_crop_flip(images, torch.Generator().manual_seed(0))
    lit = (out[:, 0] > 1).flatten(1).sum(1)
    assert (lit > 1).float().mean() > 0.5  # mostly enlarged, not kept as one pixel


def test_normalize_maps_the_channel_mean_to_zero():
    images = batch(64).float()
    mean = (images / 255).mean(dim=(0, 2, 3))[None, :, None, None]
    std = (images / 255).std(dim=(0, 2, 3))[None, :, None, None]
    out = normalize(images, mean, std)
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (out.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_channel_stats_are_per_channel_on_a_zero_to_one_scale():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    images[:, 0] = 255  # red: always full
    images[:2, 1] = 255  # green: full in half the images
    mean, std = channel_stats(images)
    assert mean == pytest.approx([1.0, 0.5, 0.0])
    assert std[1] == pytest.approx(float(torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat_interleave(64).std()))
    assert std[0] == std[2] == pytest.approx(1e-3)  # a flat channel is not divided by zero
