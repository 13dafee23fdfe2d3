"""Suggested labels: the class the model keeps predicting for a sample, with how sure it is.

Per sample, `SuggestionTracker` follows the predicted class across epochs. While the prediction stays the same,
its confidence is a moving average of the probability of that class; when the prediction changes, both restart.
A sample gets a suggestion once the same class has been predicted in each of the last `SUGGEST_EPOCHS` epochs with
a confidence of at least `CleanConfig.suggest_confidence`; otherwise it has none. The suggestion may be the given
label (the model confirms it) or another class (the model contradicts it).

Samples a method leaves out of training are measured without gradient, so their suggestions come from a model
that was never fitted to their (possibly wrong) labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelscrub.measurement import Probe

# The same class in each of the last 3 epochs: a prediction that flips between two classes from epoch to epoch
# (a hard or ambiguous image) gets no suggestion.
SUGGEST_EPOCHS = 3
# Weight of the previous confidence in the moving average: the last few epochs dominate.
CONFIDENCE_SMOOTHING = 0.5


def predicted_probability(measured: Probe) -> np.ndarray:
    """Probability of the predicted class per sample, from the loss and margin (NaN where not measured).

    When the prediction is the given label it is exp(-loss); otherwise the best other class is the predicted one,
    and its log-probability is the margin plus the given label's log-probability (-loss).
    """
    log_given = -measured.losses.astype(np.float64)
    log_best_other = measured.margin.astype(np.float64) + log_given
    return np.exp(np.maximum(log_given, log_best_other)).astype(np.float32)


@dataclass
class SuggestionTracker:
    predicted: np.ndarray  # (N,) int64 class of the current streak, -1 before any measurement
    streak: np.ndarray  # (N,) int32 epochs in a row with that prediction
    confidence: np.ndarray  # (N,) float32 moving average of its probability over the streak

    @classmethod
    def empty(cls, count: int) -> SuggestionTracker:
        return cls(np.full(count, -1, np.int64), np.zeros(count, np.int32), np.zeros(count, np.float32))

    @classmethod
    def from_state(cls, state: dict) -> SuggestionTracker:
        return cls(state["suggest_predicted"], state["suggest_streak"], state["suggest_confidence"])

    def to_state(self) -> dict:
        return {"suggest_predicted": self.predicted, "suggest_streak": self.streak,
                "suggest_confidence": self.confidence}

    def update(self, measured: Probe) -> None:
        was_measured = measured.predicted >= 0
        probability = predicted_probability(measured)
        same = was_measured & (measured.predicted == self.predicted)
        restarted = was_measured & ~same
        self.streak = np.where(same, self.streak + 1, np.where(restarted, 1, self.streak)).astype(np.int32)
        blended = CONFIDENCE_SMOOTHING * self.confidence + (1.0 - CONFIDENCE_SMOOTHING) * probability
        self.confidence = np.where(same, blended, np.where(restarted, probability, self.confidence)).astype(np.float32)
        self.predicted = np.where(was_measured, measured.predicted, self.predicted)

    def suggestions(self, *, min_confidence: float,
                    epochs: int = SUGGEST_EPOCHS) -> tuple[np.ndarray, np.ndarray]:
        """(suggested class or -1, confidence or NaN) per sample."""
        confident = (self.predicted >= 0) & (self.streak >= epochs) & (self.confidence >= min_confidence)
        return (np.where(confident, self.predicted, -1),
                np.where(confident, self.confidence, np.nan).astype(np.float32))
