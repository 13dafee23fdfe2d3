"""The noise-rate estimate, on synthetic losses with a known share of wrong labels."""

import numpy as np
import pytest
import torch

from labelscrub.noise import (
    DOUBTED_CAP,
    MAX_FALL,
    MAX_NOISE_RATE,
    NoiseEstimate,
    best_depth,
    doubt_estimate,
    estimate_noise,
    evidence_epochs,
    label_depth,
    read_estimate,
    tail_ratio,
)


def planted(n: int, noise_rate: float, num_classes: int = 5, seed: int = 0):
    """Losses as the warm-up leaves them: a right label scores low; a wrong label scores like a decoy (a label
    known to be wrong). Returns (given losses, decoy losses, labels, decoys, wrong)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    decoys = (labels + rng.integers(1, num_classes, n)) % num_classes
    wrong = rng.random(n) < noise_rate
    decoy_losses = rng.normal(3.0, 0.7, n)
    given = np.where(wrong, rng.normal(3.0, 0.7, n), rng.gamma(2.0, 0.4, n))
    return given, decoy_losses, labels, decoys, wrong


@pytest.mark.parametrize("noise_rate", [0.0, 0.1, 0.2, 0.4])
def test_the_estimate_recovers_the_planted_rate(noise_rate):
    given, decoy, labels, decoys, wrong = planted(10000, noise_rate)
    estimate = estimate_noise(given, decoy, labels, decoys, np.ones(10000, bool), 5, epoch=3)
    assert estimate.overall == pytest.approx(wrong.mean(), abs=0.03)
    for label in range(5):
        assert estimate.per_class[label] == pytest.approx(wrong[labels == label].mean(), abs=0.06)
    assert estimate.epoch == 3


def test_per_class_rates_follow_where_the_wrong_labels_are():
    given, decoy, labels, decoys, _ = planted(8000, 0.0, num_classes=2)
    rng = np.random.default_rng(1)
    wrong = (labels == 0) & (rng.random(8000) < 0.4)  # 40% of class 0, none of class 1
    given = np.where(wrong, rng.normal(3.0, 0.7, 8000), given)
    estimate = estimate_noise(given, decoy, labels, decoys, np.ones(8000, bool), 3, epoch=0)
    assert estimate.per_class[0] == pytest.approx(0.4, abs=0.05)
    assert estimate.per_class[1] < 0.03
    assert np.isnan(estimate.per_class[2])  # no samples of class 2
    assert estimate.overall == pytest.approx(0.2, abs=0.03)


def test_a_class_the_model_favours_is_judged_by_its_own_decoys():
    """Wrong labels of a favoured class score lower than other wrong labels; comparing with every class's decoys
    would miss them, comparing with the decoys of that class does not."""
    given, decoy, labels, decoys, wrong = planted(10000, 0.3)
    favoured = decoys == 0
    # favouring class 0 lowers every loss of label 0: of its wrong labels, its decoys, and its right labels
    decoy = np.where(favoured, decoy - 1.0, decoy)
    given = np.where(labels == 0, np.where(wrong, given - 1.0, given * 0.5), given)
    estimate = estimate_noise(given, decoy, labels, decoys, np.ones(10000, bool), 5, epoch=0)
    assert estimate.per_class[0] == pytest.approx(wrong[labels == 0].mean(), abs=0.06)


def test_ineligible_and_unmeasured_samples_take_no_part():
    given, decoy, labels, decoys, wrong = planted(10000, 0.2)
    given[:100] = np.nan
    eligible = np.ones(10000, bool)
    eligible[100:300] = False
    given[100:300] = 50.0  # would count as wrong labels if they took part
    estimate = estimate_noise(given, decoy, labels, decoys, eligible, 5, epoch=0)
    assert estimate.overall == pytest.approx(wrong[300:].mean(), abs=0.03)


def test_labels_that_all_look_as_wrong_as_decoys_are_estimated_at_the_cap():
    rng = np.random.default_rng(2)
    same = rng.normal(3.0, 0.7, 1000)
    # every tail ratio is 1 (all labels wrong), more than the estimate may say
    assert tail_ratio(same, same, float(np.median(same))) == 1.0 > MAX_NOISE_RATE
    estimate = estimate_noise(same, same.copy(), np.zeros(1000, int), np.ones(1000, int), np.ones(1000, bool), 2,
                              epoch=0)
    assert estimate.overall == MAX_NOISE_RATE and estimate.per_class[0] == MAX_NOISE_RATE
    assert np.isnan(estimate.per_class[1])  # no sample is labelled 1


def test_the_estimate_round_trips_through_a_checkpoint_state():
    estimate = NoiseEstimate(0.25, np.array([0.1, np.nan]), 5)
    back = NoiseEstimate.from_state(estimate.to_state())
    assert back.overall == 0.25 and back.epoch == 5
    assert back.per_class[0] == 0.1 and np.isnan(back.per_class[1])
    assert NoiseEstimate.from_state({}) is None


def test_label_depth_is_how_far_below_the_average_class_a_label_sits():
    logits = torch.tensor([[4.0, 1.0, -2.0], [0.0, 0.0, 0.0]])
    losses = -torch.log_softmax(logits, 1)
    depth = label_depth(losses.numpy(), losses.mean(1, keepdim=True).numpy())
    centred_logits = logits - logits.mean(1, keepdim=True)
    np.testing.assert_allclose(depth, -centred_logits.numpy(), atol=1e-6)


def test_each_label_counts_at_its_best_epoch_and_unmeasured_epochs_are_skipped():
    best = best_depth(None, np.array([3.0, 1.0, np.nan], np.float32))
    best = best_depth(best, np.array([2.0, np.nan, 4.0], np.float32))
    np.testing.assert_array_equal(best, [2.0, 1.0, 4.0])


@pytest.mark.parametrize("warmup, epochs", [(0, [1, 2, 3]), (1, [1, 2, 3]), (3, [1, 2, 3]), (4, [1, 2, 3]),
                                            (5, [2, 3, 4]), (6, [3, 4, 5]), (7, [3, 4, 5]), (20, [3, 4, 5])])
def test_the_estimate_reads_the_last_warmup_epochs_but_not_the_first_nor_late_ones(warmup, epochs):
    # a warm-up shorter than 4 epochs waits for the 4th: after one epoch the network is close to its random start
    assert list(evidence_epochs(warmup)) == epochs


def test_an_estimate_that_has_settled_from_a_network_above_chance_is_trusted_as_it_is():
    estimate = NoiseEstimate(0.4, np.array([0.3, 0.5]), epoch=5)
    assert doubt_estimate(estimate, fall=0.1, agreement=0.3, class_sizes=np.array([500, 500]),
                          num_classes=10) is estimate


@pytest.mark.parametrize("fall, agreement, sizes, reason, only_still_falling", [
    (0.3, 0.3, [500, 500], "still falling (30%", True),
    (0.0, 0.12, [500, 500], "near chance", False),  # 1.2 x chance on 10 classes
    (0.0, 0.3, [15, 12], "median class has 13 samples", False),
    (0.3, 0.12, [500, 500], "near chance", False),  # still falling too, but the network is not to be trusted
])
def test_a_doubted_estimate_is_capped_and_says_why(fall, agreement, sizes, reason, only_still_falling):
    estimate = NoiseEstimate(0.4, np.array([0.3, 0.5]), epoch=5)
    doubted = doubt_estimate(estimate, fall=fall, agreement=agreement, class_sizes=np.array(sizes), num_classes=10)
    assert reason in doubted.doubt and doubted.uncapped == 0.4
    assert doubted.overall == DOUBTED_CAP and (doubted.per_class <= DOUBTED_CAP).all()
    assert doubted.only_still_falling == only_still_falling
    again = NoiseEstimate.from_state(doubted.to_state())  # survives a checkpoint
    assert again.doubt == doubted.doubt and again.uncapped == 0.4 and again.overall == DOUBTED_CAP
    assert again.only_still_falling == only_still_falling


def test_an_estimate_read_before_its_evidence_epochs_is_doubted_with_the_epochs_it_needed():
    estimate = NoiseEstimate(0.5, np.array([0.4, 0.6]), epoch=1)
    doubted = doubt_estimate(estimate, fall=0.0, agreement=0.3, class_sizes=np.array([500, 500]), num_classes=10,
                             ended_early=evidence_epochs(0))
    assert "ended after epoch 2, before the epochs the estimate reads (2-4)" in doubted.doubt
    assert doubted.overall == DOUBTED_CAP and doubted.uncapped == 0.5


def test_an_estimate_in_a_run_too_short_for_the_plausible_mistake_count_is_doubted_with_the_epochs_it_needs():
    # the short run of BENCHMARKS.md: 8 epochs, its estimate read after the 5th, where the count needs 13
    estimate = NoiseEstimate(0.113, np.array([0.1, 0.126]), epoch=4)
    doubted = doubt_estimate(estimate, fall=0.1, agreement=0.3, class_sizes=np.array([200, 200]), num_classes=10,
                             epochs_to_count=13)
    assert "too short to count mistakes that look plausible (that needs at least 13 epochs)" in doubted.doubt
    assert doubted.overall == DOUBTED_CAP and doubted.uncapped == 0.113 and not doubted.only_still_falling


def settling(noise_rate: float, right_still_wrong: list[float], n: int = 4000):
    """Per-epoch depths where a share of the right labels still looks like decoys, shrinking epoch by epoch."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 4
    decoys = (labels + rng.integers(1, 4, n)) % 4
    wrong = rng.random(n) < noise_rate
    looks_wrong = rng.random(n)
    given = [np.where(wrong | (looks_wrong < share), rng.normal(3.0, 0.7, n), rng.gamma(2.0, 0.4, n))
             for share in right_still_wrong]
    decoy = [rng.normal(3.0, 0.7, n) for _ in right_still_wrong]
    return np.array(given, np.float32), np.array(decoy, np.float32), labels, decoys


def test_a_falling_estimate_waits_and_a_settled_one_is_read_over_the_last_epochs():
    # right labels still looking wrong: 40%, 30%, 20%, 10% of them over four epochs, then 8%, 8%; each label
    # counts at its best epoch of the window, so the window ending at the 4th reads a share like the 4th's
    given, decoy, labels, decoys = settling(0.1, [0.4, 0.3, 0.2, 0.1, 0.08, 0.08])
    everyone = np.ones(len(labels), bool)
    estimate, fall = read_estimate(given[:4], decoy[:4], labels, decoys, everyone, 4, epoch=3, last_chance=False)
    assert estimate is None and fall > MAX_FALL
    forced, _ = read_estimate(given[:4], decoy[:4], labels, decoys, everyone, 4, epoch=3, last_chance=True)
    assert forced is not None and forced.epoch == 3
    settled, fall = read_estimate(given[2:], decoy[2:], labels, decoys, everyone, 4, epoch=5, last_chance=False)
    assert settled is not None and fall <= MAX_FALL
    assert settled.epoch == 5 and abs(settled.overall - 0.1) < 0.05
