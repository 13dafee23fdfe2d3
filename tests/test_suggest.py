"""Suggested labels: the same class, confidently, over the last epochs."""

import numpy as np

from labelscrub.measurement import Probe
from labelscrub.suggest import SuggestionTracker, predicted_probability


def measurement(labels, predicted, p_label, p_predicted) -> Probe:
    """A Probe as train.py records it: loss of the given label, argmax, margin (best other over the given)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    p_label, p_predicted = np.asarray(p_label, np.float32), np.asarray(p_predicted, np.float32)
    best_other = np.where(predicted == labels, 1.0 - p_label, p_predicted)  # a stand-in for the runner-up
    return Probe(-np.log(p_label), predicted, p_label, np.log(best_other) - np.log(p_label))


def test_probability_of_the_predicted_class_comes_from_loss_and_margin():
    probe = measurement([0, 0], [0, 2], [0.7, 0.1], [0.7, 0.8])
    assert np.allclose(predicted_probability(probe), [0.7, 0.8], atol=1e-6)


def test_a_steady_confident_prediction_becomes_the_suggestion():
    tracker = SuggestionTracker.empty(3)
    labels = [0, 1, 2]
    for _ in range(3):
        # sample 0: confidently class 4 (contradicts its label); 1: confidently its own label; 2: unsure
        tracker.update(measurement(labels, [4, 1, 3], [0.05, 0.9, 0.3], [0.9, 0.9, 0.35]))
    suggested, confidence = tracker.suggestions(min_confidence=0.5, epochs=3)
    assert suggested.tolist() == [4, 1, -1]
    assert np.allclose(confidence[:2], [0.9, 0.9], atol=1e-5) and np.isnan(confidence[2])


def test_a_prediction_that_changes_restarts_the_count():
    tracker = SuggestionTracker.empty(1)
    for predicted in ([4], [4], [5], [5]):
        tracker.update(measurement([0], predicted, [0.05], [0.9]))
    assert tracker.suggestions(min_confidence=0.5, epochs=3)[0].tolist() == [-1]  # class 5 only twice in a row
    tracker.update(measurement([0], [5], [0.05], [0.9]))
    assert tracker.suggestions(min_confidence=0.5, epochs=3)[0].tolist() == [5]


def test_unmeasured_epochs_leave_the_streak_alone():
    tracker = SuggestionTracker.empty(1)
    tracker.update(measurement([0], [4], [0.05], [0.9]))
    tracker.update(Probe(np.array([np.nan], np.float32), np.array([-1]), np.array([np.nan]), np.array([np.nan])))
    tracker.update(measurement([0], [4], [0.05], [0.9]))
    assert tracker.streak.tolist() == [2] and tracker.predicted.tolist() == [4]


def test_the_tracker_round_trips_through_a_checkpoint_state():
    tracker = SuggestionTracker.empty(2)
    tracker.update(measurement([0, 1], [3, 1], [0.1, 0.8], [0.7, 0.8]))
    back = SuggestionTracker.from_state(tracker.to_state())
    assert back.predicted.tolist() == [3, 1] and back.streak.tolist() == [1, 1]
