"""What run.json and the report metadata say: the noise section and the meaning of the score, from values chosen
by hand."""

import numpy as np
import pytest

from labelscrub.config import CleanConfig
from labelscrub.confusion import ConfusionEstimate
from labelscrub.mistakes import MistakeEstimate
from labelscrub.noise import NoiseEstimate
from labelscrub.summary import noise_summary, score_meaning


def test_noise_summary_counts_per_class_and_the_noise_matrix():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([1, 1, 0, 0, 1, 2])
    dropped = np.array([True, True, False, True, False, False])
    relabelled = np.array([True, False, False, False, False, False])
    summary = noise_summary(estimate=NoiseEstimate(0.5, np.array([0.6, 0.5, 0.0]), 2), mistakes=None, confusion=None,
                            rho_max=0.5, labels=labels, predicted=predicted, eligible=np.ones(6, bool),
                            dropped=dropped, relabelled=relabelled, class_names=["a", "b", "c"])
    assert summary["classes"]["a"] == {"samples": 3, "estimated_noise_rate": 0.6, "spread_share": 0.6,
                                       "mistake_share": None, "confused_share": None, "confused_with": None,
                                       "dropped": 2, "relabelled": 1}
    assert summary["classes"]["c"]["dropped"] == 0
    assert summary["noise_matrix"] == [{"given": "a", "predicted": "b", "count": 2},
                                       {"given": "b", "predicted": "a", "count": 1}]
    assert summary["estimated_noise_rate"] == 0.5 and summary["rho_max_used"] == 0.5


def test_the_summary_reports_each_class_at_the_larger_of_its_two_estimates_and_where_its_labels_came_from():
    labels = np.repeat([0, 1, 2], [100, 300, 100])
    nothing = np.zeros(len(labels), bool)
    summary = noise_summary(
        estimate=NoiseEstimate(0.02, np.array([0.05, 0.01, 0.02]), 5), mistakes=None,
        confusion=ConfusionEstimate(np.array([0.0, 0.2, 0.0]), np.array([-1, 0, -1]), 16, classes_read=2),
        rho_max=0.02,
        labels=labels, predicted=labels, eligible=np.ones(len(labels), bool), dropped=nothing,
        relabelled=nothing, class_names=["truck", "automobile", "ship"])
    assert summary["classes"]["automobile"]["estimated_noise_rate"] == 0.2
    assert summary["classes"]["automobile"]["confused_with"] == "truck"
    assert summary["classes"]["truck"]["estimated_noise_rate"] == 0.05
    assert summary["classes"]["truck"]["confused_with"] is None
    assert summary["estimated_noise_rate"] == pytest.approx((100 * 0.05 + 300 * 0.2 + 100 * 0.02) / 500)
    assert summary["spread_noise_rate"] == 0.02 and summary["confusion_after_epoch"] == 16
    assert summary["confusion_classes_read"] == 2  # a few per sample, not every class's


def test_plausible_mistakes_raise_a_class_above_its_decoy_estimate_unless_that_estimate_was_doubted():
    labels = np.repeat([0, 1], [100, 300])
    nothing = np.zeros(len(labels), bool)

    def summarise(doubt):
        return noise_summary(
            estimate=NoiseEstimate(0.05, np.array([0.05, 0.05]), 5, doubt), mistakes=MistakeEstimate(
                np.array([0.3, np.nan]), 16, plausibility=0.975, evenness=0.87),
            confusion=None, rho_max=0.05, labels=labels, predicted=labels, eligible=np.ones(len(labels), bool),
            dropped=nothing, relabelled=nothing, class_names=["cat", "dog"])

    trusted = summarise(None)
    assert trusted["classes"]["cat"]["estimated_noise_rate"] == 0.3
    assert trusted["classes"]["cat"]["mistake_share"] == 0.3
    assert trusted["classes"]["dog"]["estimated_noise_rate"] == 0.05  # not read: the decoy estimate stands
    assert trusted["estimated_noise_rate"] == pytest.approx((100 * 0.3 + 300 * 0.05) / 400)
    assert trusted["mistake_noise_rate"] == pytest.approx(0.3)  # over the classes it read
    assert trusted["mistake_plausibility"] == 0.975 and trusted["disagreement_evenness"] == 0.87
    doubted = summarise("the network is near chance")
    assert doubted["classes"]["cat"]["estimated_noise_rate"] == 0.05
    assert doubted["estimate_doubt"] == doubted["spread_doubt"] == "the network is near chance"


def test_a_count_read_past_a_still_falling_decoy_estimate_leaves_no_doubt_on_the_final_estimate():
    labels = np.repeat([0, 1], [100, 300])
    nothing = np.zeros(len(labels), bool)
    falling = NoiseEstimate(0.03, np.array([0.03, 0.03]), 5, "it was still falling (30% over the last epoch)",
                            uncapped=0.03, only_still_falling=True)
    summary = noise_summary(estimate=falling, mistakes=MistakeEstimate(np.array([0.3, 0.1]), 16), confusion=None,
                            rho_max=0.15, labels=labels, predicted=labels, eligible=np.ones(len(labels), bool),
                            dropped=nothing, relabelled=nothing, class_names=["cat", "dog"])
    assert summary["estimate_doubt"] is None
    assert summary["spread_doubt"] == "it was still falling (30% over the last epoch)"
    assert summary["estimated_noise_rate"] == pytest.approx((100 * 0.3 + 300 * 0.1) / 400)


def test_the_score_meaning_names_what_each_method_ranks_by():
    assert "moving average over epochs (smoothing 0.6)" in score_meaning(CleanConfig(smoothing=0.6))
    spl = score_meaning(CleanConfig(method="spl", smoothing=0.6, rank_by="margin"))
    assert spl.startswith("cross-entropy of the given label") and "last epoch" in spl
    assert score_meaning(CleanConfig(method="oneshot")).startswith("loss of the ranking model")
