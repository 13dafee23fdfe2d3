"""Labels moved from one class to one other: the estimate finds the share and its source, and picks the samples."""

import numpy as np
import pytest
import torch

from labelscrub.confusion import (
    MAX_CELLS,
    MIN_CONFUSED_SHARE,
    ConfusionEstimate,
    ConfusionReading,
    TopLogProbs,
    confused_samples,
    confusion_beyond,
    confusion_epochs,
    count_epochs,
    epochs_to_count,
    estimate_confusion,
    fits_in_memory,
    read_confusion,
    spread_floor,
    stronger_reading,
    top_count,
)
from labelscrub.measurement import TopClasses
from labelscrub.noise import smallest_tail_ratio
from labelscrub.schedule import drop_count
from labelscrub.task import _top_log_probs
from labelscrub.train import _Recorder

CLASSES, PER_CLASS = 4, 1000


def network_view(moved_share=0.0, seed=0, classes=CLASSES, per_class=PER_CLASS):
    """Log-probabilities as a network sees its training images in the middle of training: it has fitted the right
    labels, and has learnt that some images of class 0 are labelled 1, but not which: an image of class 0 looks
    the same whatever its label. Returns (log_probs, given labels, true labels)."""
    generator = np.random.default_rng(seed)
    true = np.repeat(np.arange(classes), per_class)
    given = true.copy()
    class_zero = np.flatnonzero(true == 0)
    moved = generator.choice(class_zero, int(moved_share * per_class), replace=False)
    given[moved] = 1
    logits = generator.normal(0.0, 1.0, (len(true), classes))
    logits[np.arange(len(true)), true] += 4.0
    if moved_share:
        logits[true == 0, 1] += 1.5
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return log_probs, given, true


def measured(log_probs, given, top):
    """What an epoch's measurement keeps of the log-probabilities `log_probs` when asked for `top` (TopClasses)."""
    recorder = _Recorder(len(given), torch.device("cpu"), top=top)
    recorder.record(torch.arange(len(given)), torch.from_numpy(log_probs).float(), torch.from_numpy(given), None)
    return recorder.result()


def window(epochs_log_probs, given, count):
    """The window's mean log-probabilities as TopLogProbs, `count` classes per sample chosen at its first epoch."""
    top = _top_log_probs(measured(epochs_log_probs[0], given, TopClasses(count)))
    for log_probs in epochs_log_probs[1:]:
        top = top.plus(_top_log_probs(measured(log_probs, given, TopClasses(count, top.classes))))
    return top.mean(len(epochs_log_probs))


def reading(log_probs, given, usable):
    """The confusion window's reading of the mean log-probabilities `log_probs` (an array, or TopLogProbs)."""
    classes = log_probs.shape[1] if isinstance(log_probs, np.ndarray) else int(given.max()) + 1
    return read_confusion(log_probs, given, usable, classes, epoch=11)


def confused_in(log_probs, given, usable, estimate, spread):
    """The confused samples `estimate` leaves out, ranked by the reading of `log_probs`."""
    return confused_samples(reading(log_probs, given, usable), given, usable, ids(len(given)), estimate, spread)


def ids(count):
    return [f"s{index:04d}" for index in range(count)]


@pytest.mark.parametrize("epochs, after, confusion, count", [
    (30, 5, range(9, 12), range(14, 17)),  # the confusion estimate's ends at 40% of the training, the count's at 55%
    (60, 5, range(21, 24), range(30, 33)),
    (20, 4, range(5, 8), range(8, 11)),
    (16, 5, range(6, 9), range(6, 9)),  # 40% would not end before 55% starts: both read the count's window
    (20, 5, range(8, 11), range(8, 11)),  # 40% would overlap the warm-up's estimate
    (8, 1, range(2, 5), range(2, 5)),
    (4, 1, range(0), range(0)),  # too short: the window would overlap the warm-up's estimate
    (6, 2, range(0), range(0)),
])
def test_the_confusion_window_comes_before_the_count_where_the_run_is_long_enough(epochs, after, confusion, count):
    assert confusion_epochs(epochs, after) == confusion and count_epochs(epochs, after) == count


@pytest.mark.parametrize("after, needed", [(3, 11), (4, 13), (5, 15)])
def test_a_run_too_short_for_the_count_is_told_the_fewest_epochs_that_would_read_it(after, needed):
    assert len(count_epochs(needed, after)) and not len(count_epochs(needed - 1, after))
    assert epochs_to_count(after) == needed


def test_a_one_way_move_is_found_with_its_source_and_its_share():
    log_probs, given, _ = network_view(moved_share=0.4)
    estimate = estimate_confusion(log_probs, given, np.ones(len(given), bool), np.zeros(CLASSES), epoch=16)
    # 400 of class 0's images carry the label 1: 400 of the 1,400 images labelled 1.
    assert estimate.source.tolist() == [-1, 0, -1, -1]
    assert estimate.share[1] == pytest.approx(400 / 1400, abs=0.05)
    assert estimate.share[[0, 2, 3]].tolist() == [0.0, 0.0, 0.0]
    assert estimate.epoch == 16


def test_clean_labels_show_no_confusion():
    log_probs, given, _ = network_view(moved_share=0.0)
    estimate = estimate_confusion(log_probs, given, np.ones(len(given), bool), np.zeros(CLASSES), epoch=16)
    assert (estimate.source == -1).all() and (estimate.share == 0).all()


def test_a_confusion_counts_only_beyond_the_decoy_estimate_by_the_minimum_share():
    log_probs, given, _ = network_view(moved_share=0.4)
    usable = np.ones(len(given), bool)

    def sources(class_one_spread):
        spread = np.array([0.0, class_one_spread, 0.0, 0.0])  # class 1's decoy estimate, the others' 0
        return estimate_confusion(log_probs, given, usable, spread, epoch=16).source.tolist()

    found = estimate_confusion(log_probs, given, usable, np.zeros(CLASSES), epoch=16).share[1]
    assert found > MIN_CONFUSED_SHARE
    assert sources(found - MIN_CONFUSED_SHARE - 0.01) == [-1, 0, -1, -1]
    # wrong labels spread over the classes already explain class 1's: left to the loss ranking
    assert sources(found - MIN_CONFUSED_SHARE + 0.01) == [-1, -1, -1, -1]
    assert sources(0.5) == [-1, -1, -1, -1]


def test_two_classes_the_network_cannot_tell_apart_are_not_a_confusion():
    """Images of classes 0 and 1 look alike and carry either label at random: each class scores like the other,
    over half of it (enough to count by itself), so the pair is the network's own confusion, not moved labels."""
    generator = np.random.default_rng(0)
    true = np.repeat(np.arange(CLASSES), PER_CLASS)
    given = np.where(true < 2, generator.integers(0, 2, len(true)), true)
    logits = generator.normal(0.0, 1.0, (len(true), CLASSES))
    logits[np.arange(len(true)), true] += 4.0
    alike = true < 2
    logits[alike, :2] = logits[alike, :2].mean(axis=1, keepdims=True) + generator.normal(0, 0.3, (alike.sum(), 2))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    usable = np.ones(len(true), bool)
    for label, origin in ((1, 0), (0, 1)):
        members, reference = given == label, given == origin
        share = smallest_tail_ratio(log_probs[members, origin] - log_probs[members, label],
                                    log_probs[reference, origin] - log_probs[reference, label])
        assert share >= 0.5
    estimate = estimate_confusion(log_probs, given, usable, np.zeros(CLASSES), epoch=16)
    assert (estimate.source == -1).all()


def test_the_confused_samples_are_the_moved_ones():
    log_probs, given, true = network_view(moved_share=0.4)
    usable = np.ones(len(given), bool)
    estimate = estimate_confusion(log_probs, given, usable, np.zeros(CLASSES), epoch=16)
    confused = confused_in(log_probs, given, usable, estimate, np.zeros(CLASSES))
    assert confused.sum() == drop_count(estimate.share[1], (given == 1).sum())
    assert (given[confused] == 1).all()
    assert (true[confused] == 0).mean() >= 0.9


def test_the_share_the_loss_ranking_already_leaves_out_is_not_confused_twice():
    log_probs, given, _ = network_view(moved_share=0.4)
    usable = np.ones(len(given), bool)
    estimate = estimate_confusion(log_probs, given, usable, np.zeros(CLASSES), epoch=16)
    spread = np.array([0.0, 0.1, 0.0, 0.0])
    confused = confused_in(log_probs, given, usable, estimate, spread)
    assert confused.sum() == drop_count(estimate.share[1] - 0.1, (given == 1).sum())


def test_unusable_or_unmeasured_samples_are_never_confused_nor_counted():
    log_probs, given, _ = network_view(moved_share=0.4)
    usable = np.ones(len(given), bool)
    usable[:10] = False
    log_probs[10:20] = np.nan
    estimate = estimate_confusion(log_probs, given, usable, np.zeros(CLASSES), epoch=16)
    confused = confused_in(log_probs, given, usable, estimate, np.zeros(CLASSES))
    assert not confused[:20].any() and estimate.source[1] == 0


def test_the_state_round_trips_and_is_absent_before_the_estimate():
    estimate = ConfusionEstimate(np.array([0.0, 0.3]), np.array([-1, 0]), 16)
    again = ConfusionEstimate.from_state(estimate.to_state())
    assert again.source.tolist() == [-1, 0] and again.share.tolist() == [0.0, 0.3] and again.epoch == 16
    assert ConfusionEstimate.from_state({}) is None


def test_the_reading_round_trips_through_the_state_and_gives_the_estimate_it_would_have_given_at_once():
    log_probs, given, _ = network_view(moved_share=0.4)
    usable = np.ones(len(given), bool)
    usable[:5] = False
    again = ConfusionReading.from_state({"other": 1, **reading(log_probs, given, usable).to_state()})
    spread = np.array([0.0, 0.1, 0.0, 0.0])
    at_once = estimate_confusion(log_probs, given, usable, spread, epoch=11)
    later = confusion_beyond(again, spread)
    assert later.source.tolist() == at_once.source.tolist() == [-1, 0, -1, -1] and later.epoch == 11
    np.testing.assert_array_equal(later.share, at_once.share)
    assert np.isnan(again.score[:5]).all() and not confused_samples(again, given, usable, ids(len(given)), later,
                                                                     spread)[:5].any()
    assert ConfusionReading.from_state({}) is None


def test_each_class_takes_the_reading_that_finds_more_with_its_source_and_its_samples_scores():
    given = np.array([0, 1, 2, 1, 2, 0])
    early = ConfusionReading(np.array([0.0, 0.4, 0.1]), np.array([-1, 0, 1]),
                             np.array([-np.inf, 1.0, 2.0, 3.0, np.nan, -np.inf], np.float32), 11)
    late = ConfusionReading(np.array([0.0, 0.2, 0.3]), np.array([-1, 2, 0]),
                            np.array([-np.inf, 5.0, 6.0, 7.0, 8.0, -np.inf], np.float32), 16)
    stronger = stronger_reading(early, late, given)
    assert stronger.share.tolist() == [0.0, 0.4, 0.3] and stronger.source.tolist() == [-1, 0, 0]
    # class 1's samples keep the early scores, class 2's take the late ones
    np.testing.assert_array_equal(stronger.score, np.array([-np.inf, 1.0, 6.0, 3.0, 8.0, -np.inf], np.float32))
    assert stronger.epoch == 16


def test_the_memory_bound_on_kept_probabilities():
    assert fits_in_memory(50_000, 100) and not fits_in_memory(MAX_CELLS, 2)


def test_a_class_whose_decoy_estimate_came_out_low_is_floored_at_the_mean_of_the_classes():
    np.testing.assert_allclose(spread_floor(np.array([0.4, 0.1, 0.4, 0.3])), [0.4, 0.3, 0.4, 0.3])
    np.testing.assert_allclose(spread_floor(np.array([0.02, np.nan, 0.0, 0.02])), [0.02, 0.01, 0.01, 0.02])


def test_under_heavy_spread_noise_only_the_confusion_beyond_the_mean_decoy_estimate_counts():
    log_probs, given, _ = network_view(moved_share=0.4)
    usable = np.ones(len(given), bool)
    # class 1's own decoy estimate is low, the others' high: the floor is their mean, 0.225, not 0.0
    spread = np.array([0.3, 0.0, 0.3, 0.3])
    estimate = estimate_confusion(log_probs, given, usable, spread, epoch=16)
    confused = confused_in(log_probs, given, usable, estimate, spread)
    assert estimate.source[1] == 0
    assert confused.sum() == drop_count(estimate.share[1] - 0.225, (given == 1).sum())


def jaccard(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.mark.parametrize("moved", [0.4, 0.0])
def test_a_few_classes_per_sample_find_the_confusion_every_class_finds_and_nearly_the_same_samples(moved):
    """20 classes; each sample's 2 most likely other classes read over a three-epoch window whose epochs differ."""
    log_probs, given, true = network_view(moved_share=moved, classes=20, per_class=300)
    generator = np.random.default_rng(1)
    epochs = []
    for _ in range(3):
        logits = log_probs + generator.normal(0.0, 0.5, log_probs.shape)
        epochs.append(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
    every = np.mean(epochs, axis=0).astype(np.float32)
    few = window(epochs, given, 2)
    usable, spread = np.ones(len(given), bool), np.zeros(20)
    exact = estimate_confusion(every, given, usable, spread, epoch=16)
    estimate = estimate_confusion(few, given, usable, spread, epoch=16)
    assert estimate.source.tolist() == exact.source.tolist() and estimate.classes_read == 2
    np.testing.assert_allclose(estimate.share, exact.share, atol=0.02)
    confused = confused_in(few, given, usable, estimate, spread)
    if moved:
        assert exact.source[1] == 0
        assert jaccard(confused, confused_in(every, given, usable, exact, spread)) >= 0.9
        assert (true[confused] == 0).mean() >= 0.9
    else:
        assert (estimate.source == -1).all() and not confused.any()


def test_reading_every_other_class_is_reading_every_class():
    log_probs, given, _ = network_view(moved_share=0.4)
    few = window([log_probs], given, top_count(CLASSES))
    rows = np.arange(len(given))
    for label in range(CLASSES):
        np.testing.assert_allclose(few.at(rows, label, given), log_probs[:, label], atol=1e-6)
    np.testing.assert_allclose(few.mass(rows, given, CLASSES), np.exp(log_probs).mean(axis=0), rtol=1e-5)


def test_an_unread_class_holds_the_mean_probability_of_the_unread_ones_and_never_outranks_a_read_one():
    log_probs, given, _ = network_view(moved_share=0.4)
    few = window([log_probs], given, 1)
    rows = np.arange(len(given))
    probabilities = np.exp(log_probs)
    unread = np.ones_like(probabilities, bool)
    unread[rows, given] = unread[rows, few.classes[:, 0]] = False
    expected = np.log((probabilities * unread).sum(axis=1) / 2)
    for label in range(CLASSES):
        value = few.at(rows, label, given)
        np.testing.assert_allclose(value[unread[:, label]], expected[unread[:, label]], atol=1e-5)
        assert (value[unread[:, label]] <= few.top[unread[:, label], 0]).all()


def test_a_sample_not_measured_every_epoch_of_the_window_takes_no_part():
    log_probs, given, _ = network_view(moved_share=0.4)
    first = measured(log_probs, given, TopClasses(2))
    second = measured(log_probs, given, TopClasses(2, first.top_classes))
    second.top_log_probs[:5], second.top_classes[:5], second.losses[5:10] = np.nan, -1, np.nan
    top = _top_log_probs(first).plus(_top_log_probs(second))
    assert not top.measured()[:10].any() and top.measured()[10:].all()
    assert (second.top_classes[10:] == first.top_classes[10:]).all()  # read at the classes asked for


def test_a_few_classes_per_sample_keep_imagenet_in_a_few_hundred_megabytes():
    """1.28 M samples x 1,000 classes: every class's probabilities take 5.1 GB (float32) on the device and as
    much on the host; what the estimate keeps instead is computed per sample from a small real measurement."""
    samples, classes, small = 1_281_167, 1000, 10
    log_probs = np.log(np.full((small, classes), 1 / classes))
    given = np.arange(small)
    count = top_count(classes)
    recorder = _Recorder(small, torch.device("cpu"), top=TopClasses(count, np.zeros((small, count), np.int32)))
    on_device = sum(tensor.nbytes for tensor in (recorder.top_classes, recorder.top_log_probs, recorder.rest_log_prob,
                                                 recorder._classes_to_read)) / small
    on_host = sum(array.nbytes for array in _top_log_probs(measured(log_probs, given, TopClasses(count)))
                  .to_state().values()) / small
    assert not fits_in_memory(samples, classes) and samples * classes * 4 > 5e9
    assert on_device * samples < 260e6 and on_host * samples < 180e6


def test_the_few_classes_per_sample_round_trip_through_the_state():
    log_probs, given, _ = network_view(moved_share=0.4)
    top = window([log_probs, log_probs], given, 2)
    again = TopLogProbs.from_state({"other": 1, **top.to_state()})
    for name in ("classes", "top", "label", "rest"):
        np.testing.assert_array_equal(getattr(again, name), getattr(top, name))
    assert TopLogProbs.from_state({}) is None
    estimate = ConfusionEstimate(np.array([0.0, 0.3]), np.array([-1, 0]), 16, classes_read=2)
    assert ConfusionEstimate.from_state(estimate.to_state()).classes_read == 2
