"""Plausible mistakes: labels an annotator gave because the image resembles that class are counted, where a
reference of labels wrong at random (the decoys) sees few of them; clean labels count nothing."""

import numpy as np
import pytest
from test_confusion import window

import labelscrub.mistakes as mistakes_module
from labelscrub.confusion import top_count
from labelscrub.mistakes import (
    HUMAN_PLAUSIBILITY,
    PEOPLE_S_EVENNESS,
    PLAUSIBILITY,
    WRONG_AT_RANDOM_EVENNESS,
    MistakeEstimate,
    combined_rates,
    count_mistakes,
    disagreement_evenness,
    doubt_is_settled,
    estimate_mistakes,
    towards_people,
)
from labelscrub.noise import NoiseEstimate, smallest_tail_ratio

CLASSES, PER_CLASS = 6, 1000


def annotated(mistake_rate, seed=0):
    """Log-probabilities of a network in the middle of training, and labels from an annotator who errs on
    ambiguous images: each image resembles a look-alike class (0 and 1, 2 and 3, ...) to a degree of its own, and
    the annotator gives a wrong class k with probability proportional to p(k)^0.85, `mistake_rate` on average.
    Returns (log_probs, given labels, mask of the wrong ones)."""
    generator = np.random.default_rng(seed)
    true = np.repeat(np.arange(CLASSES), PER_CLASS)
    rows = np.arange(len(true))
    logits = generator.normal(0.0, 1.0, (len(true), CLASSES))
    logits[rows, true] += 4.0
    logits[rows, true ^ 1] += 4.0 * generator.uniform(0.0, 1.0, len(true))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    slip = np.exp(0.85 * log_probs)
    slip[rows, true] = 0.0
    slip *= mistake_rate / slip.sum(axis=1).mean()
    draw = generator.uniform(0.0, 1.0, len(true))
    cumulative = np.cumsum(slip, axis=1)
    wrong = draw < cumulative[:, -1]
    given = np.where(wrong, (draw[:, None] >= cumulative).sum(axis=1), true)
    return log_probs, given, wrong


def overall(estimate, given):
    return float(np.average(estimate.per_class, weights=np.bincount(given, minlength=CLASSES)))


def test_plausible_mistakes_are_mostly_counted_where_a_uniform_reference_sees_almost_none():
    log_probs, given, wrong = annotated(0.3)
    usable = np.ones(len(given), bool)
    counted = overall(estimate_mistakes(log_probs, given, usable, CLASSES, epoch=16), given)
    assert wrong.mean() == pytest.approx(0.3, abs=0.02)
    # the annotator's mistakes whose class the network puts first look right: those are not counted
    assert 0.18 <= counted <= 0.32
    # every other class alike, as the decoys are
    assert overall(estimate_mistakes(log_probs, given, usable, CLASSES, epoch=16, plausibility=0.0), given) <= 0.05


def test_clean_labels_count_no_mistakes():
    log_probs, given, wrong = annotated(0.0)
    estimate = estimate_mistakes(log_probs, given, np.ones(len(given), bool), CLASSES, epoch=16)
    assert not wrong.any() and estimate.per_class.max() <= 0.02 and estimate.epoch == 16


def test_a_few_classes_per_sample_count_as_every_class_does():
    log_probs, given, _ = annotated(0.3)
    usable = np.ones(len(given), bool)
    every = estimate_mistakes(log_probs, given, usable, CLASSES, epoch=16).per_class
    all_read = estimate_mistakes(window([log_probs], given, top_count(CLASSES)), given, usable, CLASSES, epoch=16)
    np.testing.assert_allclose(all_read.per_class, every, atol=1e-6)
    # two of the five other classes read, the rest at their stand-in: close, not equal
    two_read = estimate_mistakes(window([log_probs], given, 2), given, usable, CLASSES, epoch=16)
    np.testing.assert_allclose(two_read.per_class, every, atol=0.05)


def test_samples_not_usable_or_not_measured_take_no_part_and_small_classes_are_not_read():
    log_probs, given, _ = annotated(0.3)
    usable = np.ones(len(given), bool)
    usable[given == 5] = False
    log_probs = log_probs.copy()
    log_probs[given == 4] = np.nan
    estimate = estimate_mistakes(log_probs, given, usable, CLASSES, epoch=16)
    assert np.isnan(estimate.per_class[4:]).all() and not np.isnan(estimate.per_class[:4]).any()


def test_a_class_is_raised_to_its_mistakes_unless_the_decoy_estimate_was_doubted():
    mistakes = MistakeEstimate(np.array([0.3, np.nan, 0.01]), 16)
    noise = NoiseEstimate(0.05, np.array([0.05, 0.05, 0.05]), 5)
    np.testing.assert_array_equal(combined_rates(noise, mistakes), [0.3, 0.05, 0.05])
    np.testing.assert_array_equal(combined_rates(noise, None), noise.per_class)
    doubted = NoiseEstimate(0.05, np.array([0.05, 0.05, 0.05]), 5, doubt="near chance", uncapped=0.5)
    np.testing.assert_array_equal(combined_rates(doubted, mistakes), doubted.per_class)


def test_a_decoy_estimate_doubted_only_for_still_falling_is_raised_to_the_count():
    """Human noise: the decoy estimate reads a few percent and its relative fall in the warm-up is noisy; the
    count, read in mid-training, is not doubted for it."""
    mistakes = MistakeEstimate(np.array([0.2, np.nan, 0.01]), 16)
    falling = NoiseEstimate(0.04, np.array([0.04, 0.05, 0.03]), 5, doubt="it was still falling (26% ...)",
                            uncapped=0.04, only_still_falling=True)
    np.testing.assert_array_equal(combined_rates(falling, mistakes), [0.2, 0.05, 0.03])


def test_only_a_count_read_past_a_still_falling_doubt_settles_it():
    """run.json warns about the final estimate only while the doubted decoy estimate still stands for it."""
    falling = NoiseEstimate(0.04, np.array([0.04, 0.05, 0.03]), 5, doubt="it was still falling (26% ...)",
                            uncapped=0.04, only_still_falling=True)
    near_chance = NoiseEstimate(0.05, np.full(3, 0.05), 5, doubt="near chance", uncapped=0.5)
    read, unread = MistakeEstimate(np.array([0.2, np.nan, 0.01]), 16), MistakeEstimate(np.full(3, np.nan), 16)
    assert doubt_is_settled(falling, read)
    assert not doubt_is_settled(falling, unread) and not doubt_is_settled(falling, None)
    assert not doubt_is_settled(near_chance, read)
    assert not doubt_is_settled(NoiseEstimate(0.05, np.full(3, 0.05), 5), read)


def test_data_whose_decoys_find_almost_nothing_wrong_is_not_raised_to_the_count():
    """On clean data the count reads the right labels of the hardest images: it waits for some labels wrong at
    random."""
    mistakes = MistakeEstimate(np.array([0.08, 0.04, 0.0]), 16)
    clean_looking = NoiseEstimate(0.002, np.array([0.0, 0.006, 0.0]), 5)
    np.testing.assert_array_equal(combined_rates(clean_looking, mistakes), clean_looking.per_class)
    some_random = NoiseEstimate(mistakes_module.MIN_RANDOM_SHARE, np.full(3, mistakes_module.MIN_RANDOM_SHARE), 5)
    np.testing.assert_array_equal(combined_rates(some_random, mistakes), [0.08, 0.04, some_random.per_class[2]])


def test_the_estimate_round_trips_through_a_checkpoint_state():
    estimate = MistakeEstimate(np.array([0.3, np.nan, 0.01]), 16, plausibility=0.9, evenness=0.87)
    restored = MistakeEstimate.from_state(estimate.to_state())
    np.testing.assert_array_equal(restored.per_class, estimate.per_class)
    assert restored.epoch == 16 and restored.plausibility == 0.9 and MistakeEstimate.from_state({}) is None
    assert restored.evenness == 0.87
    # a checkpoint from before the exponent was recorded was read at PLAUSIBILITY, and the evenness not at all
    older = {key: value for key, value in estimate.to_state().items()
             if key not in ("mistakes_plausibility", "mistakes_evenness")}
    assert MistakeEstimate.from_state(older).plausibility == PLAUSIBILITY
    assert np.isnan(MistakeEstimate.from_state(older).evenness)


@pytest.mark.parametrize(("decoy_share", "expected"), [
    (0.1, 1.0),  # the decoys see a tenth of the count: people's mistakes
    (0.5, 1.0),
    (0.6, 0.5),
    (0.7, 0.0),  # the decoys see most of it: labels wrong at random
    (1.0, 0.0),
])
def test_where_the_disagreements_cannot_be_read_the_decoy_share_tells_people_s_mistakes(decoy_share, expected):
    assert towards_people(*decoys_seeing(decoy_share)) == pytest.approx(expected)


def decoys_seeing(decoy_share):
    """(decoy estimate, count, class sizes) where the decoy estimate is `decoy_share` of what the count reads: the
    count raises classes 0 and 1; class 2, not read, keeps its decoy estimate."""
    count = MistakeEstimate(np.array([0.4, 0.2, np.nan]), 16)
    sizes = np.array([100, 100, 200])
    combined = (0.4 * 100 + 0.2 * 100 + 0.1 * 200) / 400
    return NoiseEstimate(decoy_share * combined, np.array([0.0, 0.0, 0.1]), 5), count, sizes


def mislabelled(rate, look_alike_share, seed=0):
    """Labels of the annotated images' true classes, `rate` of them wrong: `look_alike_share` of the wrong ones the
    image's look-alike class (0 and 1, 2 and 3, ...), the rest any other class drawn uniformly."""
    generator = np.random.default_rng(seed)
    true = np.repeat(np.arange(CLASSES), PER_CLASS)
    anywhere = (true + generator.integers(1, CLASSES, len(true))) % CLASSES
    wrong_class = np.where(generator.uniform(0.0, 1.0, len(true)) < look_alike_share, true ^ 1, anywhere)
    return np.where(generator.uniform(0.0, 1.0, len(true)) < rate, wrong_class, true)


def test_people_s_mistakes_gather_on_look_alike_classes_where_random_flips_spread_evenly():
    log_probs, _, _ = annotated(0.3)
    usable = np.ones(len(log_probs), bool)
    people, at_random = mislabelled(0.3, look_alike_share=0.6), mislabelled(0.3, look_alike_share=0.0)
    gathered = disagreement_evenness(log_probs, people, usable, CLASSES)
    assert gathered <= PEOPLE_S_EVENNESS
    assert disagreement_evenness(log_probs, at_random, usable, CLASSES) >= WRONG_AT_RANDOM_EVENNESS
    # read from a few classes per sample (TopLogProbs) it is the same where every class is read
    assert disagreement_evenness(window([log_probs], people, top_count(CLASSES)), people, usable,
                                 CLASSES) == pytest.approx(gathered, abs=1e-6)
    # nothing to read: every label agrees with the network
    assert np.isnan(disagreement_evenness(log_probs, log_probs.argmax(axis=1), usable, CLASSES))


@pytest.mark.parametrize(("evenness", "expected"), [
    (0.5, 1.0),  # the disagreements gather on a few classes: people's mistakes
    (PEOPLE_S_EVENNESS, 1.0),
    (0.75 * PEOPLE_S_EVENNESS + 0.25 * WRONG_AT_RANDOM_EVENNESS, 0.75),
    (WRONG_AT_RANDOM_EVENNESS, 0.0),  # spread evenly: labels wrong at random
    (0.99, 0.0),
])
@pytest.mark.parametrize("decoy_share", [0.3, 0.6, 0.75])
def test_where_the_disagreements_go_tells_people_s_mistakes_whatever_the_decoys_see(evenness, expected, decoy_share):
    assert towards_people(*decoys_seeing(decoy_share), evenness) == pytest.approx(expected)


def test_where_the_count_is_not_used_it_is_read_at_its_usual_exponent_as_it_is():
    log_probs, given, _ = annotated(0.3)
    usable = np.ones(len(given), bool)
    first = estimate_mistakes(log_probs, given, usable, CLASSES, epoch=16)
    clean_looking = NoiseEstimate(0.002, np.full(CLASSES, 0.002), 5)
    near_chance = NoiseEstimate(0.05, np.full(CLASSES, 0.05), 5, doubt="near chance", uncapped=0.5)
    for noise in (clean_looking, near_chance):
        counted = count_mistakes(log_probs, given, usable, CLASSES, noise, epoch=16)
        assert counted.plausibility == PLAUSIBILITY
        np.testing.assert_array_equal(counted.per_class, first.per_class)


def test_people_s_mistakes_the_decoys_barely_see_are_counted_closer_to_their_number():
    log_probs, given, wrong = annotated(0.3)
    usable = np.ones(len(given), bool)
    first = estimate_mistakes(log_probs, given, usable, CLASSES, epoch=16)
    few_at_random = NoiseEstimate(0.03, np.full(CLASSES, 0.03), 5)
    counted = count_mistakes(log_probs, given, usable, CLASSES, few_at_random, epoch=16)
    assert counted.plausibility == HUMAN_PLAUSIBILITY and counted.epoch == 16
    assert overall(first, given) < overall(counted, given) <= wrong.mean() + 0.02
    # however many of them the decoys see: the disagreements gather on look-alike classes
    seeing_most = NoiseEstimate(overall(first, given), first.per_class * 0.9, 5)
    assert count_mistakes(log_probs, given, usable, CLASSES, seeing_most, epoch=16).plausibility == HUMAN_PLAUSIBILITY


def test_labels_wrong_at_random_are_counted_half_way_between_the_decoys_and_the_plausible_count():
    # the decoys read labels wrong at random short and the count reads them over: the mean of the two stands
    log_probs, _, _ = annotated(0.3)
    usable = np.ones(len(log_probs), bool)
    at_random = mislabelled(0.2, look_alike_share=0.0)
    first = estimate_mistakes(log_probs, at_random, usable, CLASSES, epoch=16)
    decoys = NoiseEstimate(0.15, np.full(CLASSES, 0.15), 5)
    counted = count_mistakes(log_probs, at_random, usable, CLASSES, decoys, epoch=16)
    assert counted.evenness >= WRONG_AT_RANDOM_EVENNESS and counted.plausibility == PLAUSIBILITY
    np.testing.assert_allclose(counted.per_class, (np.fmax(first.per_class, 0.15) + 0.15) / 2)


def test_unit_weights_give_the_unweighted_tail_ratio():
    generator = np.random.default_rng(0)
    given, wrong = generator.normal(0.0, 1.0, 500), generator.normal(1.0, 1.0, 800)
    assert smallest_tail_ratio(given, wrong, np.ones(len(wrong))) == pytest.approx(smallest_tail_ratio(given, wrong),
                                                                                    rel=0.02)
    # a weight counts as that many copies
    doubled = np.concatenate([wrong, wrong[:100]])
    weights = np.concatenate([np.full(100, 2.0), np.ones(700)])
    assert smallest_tail_ratio(given, wrong, weights) == pytest.approx(smallest_tail_ratio(given, doubled), rel=0.02)
