"""Noise injection and detection metrics used by the benchmark, on tiny inputs with answers worked by hand."""

import numpy as np
import pytest

from labelscrub.planted import auroc, detection_scores, inject_noise, instance_dependent_noise, noise_matrix


def test_symmetric_noise_flips_exactly_the_rate_to_other_classes():
    labels = np.arange(1000) % 10
    noisy = inject_noise(labels, kind="symmetric", rate=0.4, num_classes=10, seed=1)
    flipped = noisy != labels
    assert flipped.sum() == 400
    assert set(np.unique(noisy[flipped])) == set(range(10))  # every class receives flips
    again = inject_noise(labels, kind="symmetric", rate=0.4, num_classes=10, seed=1)
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, inject_noise(labels, kind="symmetric", rate=0.4, num_classes=10, seed=2))


def test_asymmetric_noise_moves_only_mapped_classes_to_their_target():
    labels = np.repeat(np.arange(4), 10)
    noisy = inject_noise(labels, kind="asymmetric", rate=0.3, num_classes=4, seed=0, mapping={0: 1, 2: 3, 3: 2})
    flipped = noisy != labels
    assert flipped.sum() == 9  # 3 of class 0, 3 of class 2, 3 of class 3
    assert (noisy[flipped & (labels == 0)] == 1).all()
    assert (noisy[flipped & (labels == 2)] == 3).all() and (noisy[flipped & (labels == 3)] == 2).all()
    assert not flipped[labels == 1].any()


def test_zero_noise_changes_nothing():
    labels = np.arange(50) % 5
    np.testing.assert_array_equal(inject_noise(labels, kind="symmetric", rate=0.0, num_classes=5, seed=0), labels)


def test_bad_noise_kind_is_rejected():
    with pytest.raises(ValueError, match="symmetric"):
        inject_noise(np.zeros(3), kind="pairflip", rate=0.1, num_classes=2, seed=0)


def test_detection_scores_worked_example():
    flipped = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    dropped = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)
    scores = detection_scores(dropped, flipped)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert detection_scores(np.zeros(8, bool), flipped)["f1"] == 0.0


def test_auroc_perfect_inverted_tied_and_hand_worked():
    flipped = np.array([0, 0, 1, 1], bool)
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), flipped) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), flipped) == 0.0
    assert auroc(np.ones(4), flipped) == 0.5
    # pairs (flipped, clean): (0.5 vs 0.1, 0.6) -> 1 + 0; (0.7 vs 0.1, 0.6) -> 1 + 1: 3 of 4
    assert auroc(np.array([0.1, 0.6, 0.5, 0.7]), flipped) == pytest.approx(0.75)
    assert auroc(np.array([0.1, np.nan, 0.5, 0.7]), flipped) == 1.0


def _reference(labels: np.ndarray, confusable: np.ndarray, hardness: np.ndarray, classes: int) -> np.ndarray:
    """Probabilities putting 1 - hardness on the true class and hardness on `confusable`, the rest tiny."""
    probs = np.full((len(labels), classes), 1e-4)
    probs[np.arange(len(labels)), labels] = 1 - hardness
    probs[np.arange(len(labels)), confusable] = hardness
    return probs / probs.sum(axis=1, keepdims=True)


def test_instance_dependent_noise_flips_exactly_the_rate_to_the_likeliest_wrong_class():
    rng = np.random.default_rng(0)
    labels = np.arange(2000) % 4
    confusable = (labels + 1 + rng.integers(0, 3, len(labels))) % 4
    hardness = rng.uniform(0.0, 0.5, len(labels))
    noisy = instance_dependent_noise(labels, _reference(labels, confusable, hardness, 4), rate=0.3, seed=3)
    flipped = noisy != labels
    assert flipped.sum() == 600
    np.testing.assert_array_equal(noisy[flipped], confusable[flipped])
    # the harder the image, the likelier its label is wrong
    assert hardness[flipped].mean() > hardness[~flipped].mean() + 0.1
    hardest, easiest = hardness > 0.4, hardness < 0.1
    assert flipped[hardest].mean() > 3 * flipped[easiest].mean()
    again = instance_dependent_noise(labels, _reference(labels, confusable, hardness, 4), rate=0.3, seed=3)
    np.testing.assert_array_equal(noisy, again)


def test_instance_dependent_noise_checks_its_inputs():
    labels = np.arange(10) % 2
    with pytest.raises(ValueError, match="shape"):
        instance_dependent_noise(labels, np.ones((9, 2)) / 2, rate=0.2, seed=0)
    with pytest.raises(ValueError, match="shape"):
        instance_dependent_noise(labels, np.ones(10), rate=0.2, seed=0)
    with pytest.raises(ValueError, match="rate"):
        instance_dependent_noise(labels, np.ones((10, 2)) / 2, rate=1.5, seed=0)
    diverged = np.ones((10, 2)) / 2
    diverged[3] = np.nan
    with pytest.raises(ValueError, match="2 values that are not finite"):
        instance_dependent_noise(labels, diverged, rate=0.2, seed=0)
    np.testing.assert_array_equal(instance_dependent_noise(labels, np.ones((10, 2)) / 2, rate=0.0, seed=0), labels)


def test_noise_matrix_counts_true_against_given():
    matrix = noise_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
