"""The Step-E schedule and the selection rule, as pure functions."""

import math

import numpy as np
import pytest

from labelscrub.measurement import Probe
from labelscrub.ranking import updated_score
from labelscrub.schedule import drop_count, learning_rate, rho_at, rho_schedule, select_kept


def test_rho_is_zero_during_warmup_then_rises_linearly_and_stays():
    schedule = rho_schedule(10, rho_max=0.3, warmup=3, ramp=3)
    assert schedule[:3] == [0.0, 0.0, 0.0]
    assert schedule[3:6] == pytest.approx([0.1, 0.2, 0.3])
    assert schedule[6:] == pytest.approx([0.3] * 4)


def test_rho_without_ramp_jumps_to_rho_max_after_warmup():
    assert rho_schedule(4, rho_max=0.25, warmup=2, ramp=0) == [0.0, 0.0, 0.25, 0.25]


def test_rho_without_warmup_starts_on_the_ramp():
    assert rho_at(0, rho_max=0.4, warmup=0, ramp=4) == pytest.approx(0.1)


def test_drop_count_is_the_ceiling_without_float_noise():
    assert drop_count(0.2, 10) == 2  # 0.2 * 10 is 2.0000000000000004 in floats
    assert drop_count(0.21, 10) == 3
    assert drop_count(0.0, 10) == 0
    assert drop_count(0.999, 3) == 3


def test_select_drops_the_highest_losses():
    losses = np.array([0.1, 5.0, 0.3, 2.0, 0.2])
    keep = select_kept(losses, ["a", "b", "c", "d", "e"], rho=0.4)
    assert keep.tolist() == [True, False, True, False, True]


def test_ties_are_broken_by_sample_id_not_by_position():
    losses = np.array([1.0, 1.0, 1.0, 0.0])
    keep = select_kept(losses, ["c", "a", "b", "d"], rho=0.5)
    assert keep.tolist() == [True, False, False, True]  # "a" and "b" go first among the tied
    reordered = select_kept(losses[[2, 0, 1, 3]], ["b", "c", "a", "d"], rho=0.5)
    assert reordered.tolist() == [False, True, False, True]


def test_nan_losses_rank_above_everything():
    keep = select_kept(np.array([0.5, math.nan, 9.0]), ["a", "b", "c"], rho=0.3)
    assert keep.tolist() == [True, False, True]


def test_ineligible_samples_are_never_kept_and_do_not_count():
    losses = np.array([9.0, 1.0, 2.0, 3.0, 0.5])
    eligible = np.array([False, True, True, True, True])
    keep = select_kept(losses, list("abcde"), rho=0.25, eligible=eligible)
    # ceil(0.25 * 4 eligible) = 1: the highest eligible loss (d) goes; a is out regardless
    assert keep.tolist() == [False, True, True, False, True]


def test_rho_zero_keeps_every_eligible_sample():
    assert select_kept(np.arange(5.0), list("abcde"), rho=0.0).all()


def test_learning_rate_warms_up_then_decays_to_zero():
    peak = 0.1
    assert learning_rate(0.0, peak=peak, epochs=10, warmup_epochs=2) == 0.0
    expected = 0.5 * peak * 0.5 * (1 + math.cos(math.pi * 0.1))
    assert learning_rate(1.0, peak=peak, epochs=10, warmup_epochs=2) == pytest.approx(expected)
    assert learning_rate(5.0, peak=peak, epochs=10, warmup_epochs=2) == pytest.approx(peak * 0.5)
    assert learning_rate(10.0, peak=peak, epochs=10, warmup_epochs=2) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(0.0, peak=peak, epochs=10, warmup_epochs=0) == peak


def test_per_class_selection_applies_the_share_within_each_class():
    # class 0 has all the high losses; globally it would lose 3 of its 4 samples, per class it loses 1 like class 1
    losses = np.array([9.0, 8.0, 7.0, 6.0, 0.5, 0.4, 0.3, 0.2])
    classes = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    ids = [f"s{i}" for i in range(8)]
    assert select_kept(losses, ids, 0.25, groups=classes).tolist() == [False, True, True, True,
                                                                        False, True, True, True]
    assert (~select_kept(losses, ids, 0.25)).sum() == 2  # global: ceil(0.25 * 8), both from class 0


def test_per_class_selection_skips_ineligible_samples():
    losses = np.array([9.0, 8.0, 0.5, 0.4])
    eligible = np.array([False, True, True, True])
    kept = select_kept(losses, ["a", "b", "c", "d"], 0.5, eligible, groups=np.array([0, 0, 1, 1]))
    assert kept.tolist() == [False, False, False, True]


def test_the_score_is_a_moving_average_that_holds_through_unmeasured_epochs():
    def measured(losses):
        losses = np.array(losses, dtype=np.float32)
        return Probe(losses, np.zeros(len(losses), np.int64), np.exp(-losses), -losses)

    score = updated_score(None, measured([1.0, 2.0]), rank_by="loss", smoothing=0.5)
    score = updated_score(score, measured([3.0, np.nan]), rank_by="loss", smoothing=0.5)
    np.testing.assert_allclose(score, [2.0, 2.0])
    np.testing.assert_allclose(updated_score(None, measured([1.0, 2.0]), rank_by="margin", smoothing=0.5), [-1, -2])


def test_per_class_selection_can_give_each_class_its_own_share():
    losses = np.array([9.0, 8.0, 1.0, 0.5, 7.0, 0.1, 0.2, 0.3])
    classes = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    keep = select_kept(losses, list("abcdefgh"), 0.25, groups=classes, group_rho={0: 0.5, 1: 0.0})
    assert keep.tolist() == [False, False, True, True, True, True, True, True]
    # a class not named in group_rho uses the shared share
    keep = select_kept(losses, list("abcdefgh"), 0.25, groups=classes, group_rho={0: 0.5})
    assert keep.tolist() == [False, False, True, True, False, True, True, True]
