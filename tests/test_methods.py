"""The training loop on tiny synthetic data: the schedule is applied as documented and seeded runs repeat."""

import contextlib
import dataclasses
import math
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from labelscrub.config import CleanConfig
from labelscrub.methods import SPL_GROWTH, train_with_method
from labelscrub.noise import DOUBTED_CAP
from labelscrub.progress import Progress
from labelscrub.schedule import drop_count, rho_at, select_kept
from labelscrub.task import Task
from labelscrub.train import train_epoch

N, CLASSES, SIDE = 40, 4, 8


def tiny_data(seed=0):
    generator = np.random.default_rng(seed)
    labels = np.arange(N) % CLASSES
    # Each class is a bright quadrant: learnable in a few steps.
    pixels = generator.integers(0, 60, size=(N, 3, SIDE, SIDE), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        pixels[index, :, row * 4:(row + 1) * 4, col * 4:(col + 1) * 4] = 220
    return torch.from_numpy(pixels), labels.astype(np.int64), [f"s{index:03d}" for index in range(N)]


def small_network(num_classes, stem):
    """A stand-in for ResNet-18 in these tests: the schedule and its bookkeeping do not depend on the network, and
    its SGD step costs about a millisecond where ResNet-18's costs a tenth of a second on one CPU core. Batch norm
    keeps train and eval mode apart, as in ResNet-18; pooling to 2 x 2 keeps the quadrants apart."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(64, num_classes))


def run(config, eligible=None, progress=None, network=small_network, **task_options):
    """Train on the tiny data with `config` (with the small network unless told otherwise); (outcome, sample ids).
    `task_options` go to the Task (resuming)."""
    pixels, labels, ids = tiny_data()
    eligible = np.ones(N, dtype=bool) if eligible is None else eligible
    task = Task(pixels=pixels, labels=labels, sample_ids=ids, eligible=eligible, num_classes=CLASSES,
                config=config.resolve(typical_side=SIDE), device=torch.device("cpu"), progress=progress or Progress(),
                **task_options)
    with mock.patch("labelscrub.train.build_model", network) if network else contextlib.nullcontext():
        return train_with_method(task), ids


# Ranked by the loss, which the outcome's loss history lets these tests recompute (the margin's arithmetic is
# tested in test_schedule.py).
CONFIG = CleanConfig(epochs=4, warmup=1, ramp=2, rho_max=0.25, batch_size=8, seed=3, rank_by="loss", smoothing=0.5)


class CountingProgress(Progress):
    def __init__(self):
        self.batches = []

    def epoch_started(self, epoch, epochs, batches):
        self.batches.append(batches)


def smoothed_losses(loss_history, smoothing):
    """The documented score, computed independently: an exponential moving average of each sample's losses."""
    scores = [loss_history[0]]
    for losses in loss_history[1:]:
        scores.append(smoothing * scores[-1] + (1 - smoothing) * losses)
    return scores


def test_each_epoch_trains_on_the_samples_the_previous_score_selected():
    progress = CountingProgress()
    outcome, ids = run(CONFIG, progress=progress)
    assert outcome.loss_history.shape == (4, N) and not np.isnan(outcome.loss_history).any()
    assert outcome.kept_history[0].all()
    scores = smoothed_losses(outcome.loss_history, CONFIG.smoothing)
    np.testing.assert_allclose(outcome.score, scores[-1], rtol=1e-5)
    for epoch in range(1, 4):
        rho = rho_at(epoch, rho_max=0.25, warmup=1, ramp=2)
        expected = select_kept(scores[epoch - 1], ids, rho)
        assert (outcome.kept_history[epoch] == expected).all()
        # dropped samples are not in the batches at all: fewer samples, fewer batches (a tail under half a
        # batch of 8 trains with the batch before it)
        full, tail = divmod(int(expected.sum()), 8)
        assert progress.batches[epoch] == full + (tail >= 4)
    assert [summary.dropped for summary in outcome.epochs] == [0, 5, 10, 10]
    assert (~outcome.final_kept).sum() == 10


def test_without_smoothing_the_last_loss_ranks():
    outcome, ids = run(CleanConfig(**{**CONFIG.to_dict(), "smoothing": 0.0}))
    np.testing.assert_array_equal(outcome.score, outcome.loss_history[-1])
    assert (outcome.final_kept == select_kept(outcome.loss_history[-1], ids, 0.25)).all()


def test_the_probe_pass_variant_probes_every_sample_after_every_epoch():
    outcome, _ = run(CleanConfig(**{**CONFIG.to_dict(), "loss_pass": "probe"}))
    assert not np.isnan(outcome.loss_history).any()
    assert all(summary.probe_seconds > 0 for summary in outcome.epochs)
    training_pass, _ = run(CONFIG)
    assert all(summary.probe_seconds == 0 for summary in training_pass.epochs)  # no separate pass at all


def test_per_class_selection_drops_the_same_share_of_every_class():
    outcome, _ = run(CleanConfig(**{**CONFIG.to_dict(), "select": "per-class"}))
    labels = np.arange(N) % CLASSES
    for epoch, rho in enumerate([0.0, 0.125, 0.25, 0.25]):
        left_out = ~outcome.kept_history[epoch]
        # 10 samples per class: ceil(rho * 10) from each class, whatever the losses of the other classes
        assert [int(left_out[labels == label].sum()) for label in range(CLASSES)] == [math.ceil(rho * 10)] * 4


def test_unreadable_samples_are_never_trained_on_nor_probed():
    eligible = np.ones(N, dtype=bool)
    eligible[[0, 7]] = False
    outcome, _ = run(CONFIG, eligible=eligible)
    assert not outcome.kept_history[:, [0, 7]].any()
    assert np.isnan(outcome.loss_history[:, [0, 7]]).all()
    assert not outcome.final_kept[[0, 7]].any()
    assert outcome.epochs[-1].dropped == 10  # ceil(0.25 * 38 readable samples)
    assert (~outcome.final_kept[eligible]).sum() == 10


def test_the_same_seed_gives_the_same_run_on_cpu():
    first, _ = run(CONFIG)
    second, _ = run(CONFIG)
    np.testing.assert_array_equal(first.loss_history, second.loss_history)
    np.testing.assert_array_equal(first.kept_history, second.kept_history)
    other, _ = run(CleanConfig(**{**CONFIG.to_dict(), "seed": 4}))
    assert not np.array_equal(first.loss_history, other.loss_history)


def method_run(method, **overrides):
    return run(CleanConfig(**{**CONFIG.to_dict(), "method": method, **overrides}))[0]


def test_erm_drops_nothing_but_still_ranks_by_its_losses():
    outcome = method_run("erm")
    assert outcome.kept_history.all() and outcome.final_kept.all()
    np.testing.assert_allclose(outcome.score, smoothed_losses(outcome.loss_history, CONFIG.smoothing)[-1], rtol=1e-5)


def test_truncation_trains_on_every_sample_and_withholds_a_share_inside_batches():
    outcome = method_run("truncation")
    assert outcome.kept_history.all()
    assert [summary.dropped > 0 for summary in outcome.epochs] == [False, True, True, True]
    assert (~outcome.final_kept).sum() == 10  # ceil(0.25 * 40) on the final probe


def test_spl_trains_samples_below_a_threshold_that_grows_each_epoch():
    outcome = method_run("spl", epochs=6)
    assert outcome.kept_history[0].all()  # warm-up
    threshold = np.quantile(outcome.loss_history[0], 1 - 0.25)  # starts so that about rho_max is above it
    for epoch in range(1, 6):
        assert (outcome.kept_history[epoch] == (outcome.loss_history[epoch - 1] < threshold)).all()
        threshold *= SPL_GROWTH


def test_oneshot_ranks_once_after_warmup_then_trains_a_fresh_model_on_the_rest():
    outcome = method_run("oneshot")
    assert outcome.loss_history.shape == (1 + 4, N)  # 1 ranking epoch, then the full 4 epochs
    assert [summary.phase for summary in outcome.epochs] == ["warmup-ranking"] + ["main"] * 4
    assert (outcome.kept_history[1:] == outcome.final_kept).all()
    assert (~outcome.final_kept).sum() == 10
    np.testing.assert_array_equal(outcome.score, outcome.loss_history[0])


def test_auto_drops_the_estimated_rate_made_at_the_end_of_the_warm_up():
    outcome, _ = run(dataclasses.replace(CONFIG, rho_max="auto", epochs=6, warmup=4))
    assert outcome.noise is not None and outcome.noise.epoch == 3  # after the fourth (last) warm-up epoch
    assert outcome.rho_max == outcome.noise.overall
    assert (~outcome.final_kept).sum() == math.ceil(round(outcome.noise.overall * N, 9))


class NotingProgress(Progress):
    def __init__(self):
        self.notes = []

    def note(self, message):
        self.notes.append(message)


def test_a_short_warm_up_waits_for_the_fourth_epoch_and_a_doubted_estimate_is_capped_and_said():
    progress = NotingProgress()
    outcome, _ = run(dataclasses.replace(CONFIG, rho_max="auto", epochs=6, warmup=1), progress=progress)
    assert outcome.noise.epoch == 3 and outcome.kept_history[:4].all()  # nothing dropped before the estimate
    # 10 samples per class are too few for the tail shares: the estimate is doubted, capped, and the user told
    assert "median class has 10 samples" in outcome.noise.doubt
    assert outcome.noise.overall <= DOUBTED_CAP and outcome.rho_max == outcome.noise.overall
    assert len(progress.notes) == 1 and "cannot be trusted" in progress.notes[0]


@pytest.mark.parametrize("epochs, counted_later", [(6, False), (16, True)])
def test_an_estimate_doubted_only_for_falling_says_the_count_may_raise_it_where_a_count_is_read(
        monkeypatch, epochs, counted_later):
    import labelscrub.task as task_module

    def still_falling(estimate, **_):
        return dataclasses.replace(estimate, overall=min(estimate.overall, DOUBTED_CAP), doubt="it was still falling",
                                   uncapped=estimate.overall, only_still_falling=True)

    monkeypatch.setattr(task_module, "doubt_estimate", still_falling)
    progress = NotingProgress()
    run(dataclasses.replace(CONFIG, rho_max="auto", epochs=epochs, warmup=4), progress=progress)
    doubt_notes = [note for note in progress.notes if "cannot be trusted" in note]
    assert len(doubt_notes) == 1
    # a run under 15 epochs has no middle window: no count comes to raise the capped estimate
    assert ("unless the plausible mistakes counted in mid-training are more" in doubt_notes[0]) == counted_later


def test_in_a_long_warm_up_auto_estimates_early_but_still_drops_nothing_until_the_warm_up_ends():
    outcome, _ = run(dataclasses.replace(CONFIG, rho_max="auto", epochs=9, warmup=8))
    assert outcome.noise is not None and outcome.noise.epoch == 5  # after the 6th epoch, not the 8th
    assert outcome.kept_history[:8].all() and outcome.rho_max == outcome.noise.overall


def test_auto_per_class_drops_each_class_its_own_estimate():
    outcome, _ = run(dataclasses.replace(CONFIG, rho_max="auto", select="per-class"))
    labels = np.arange(N) % CLASSES
    for label in range(CLASSES):
        in_class = labels == label
        expected = math.ceil(round(outcome.noise.per_class[label] * in_class.sum(), 9))
        assert (~outcome.final_kept[in_class]).sum() == expected


def test_every_method_reports_a_noise_estimate_and_suggestions():
    for method in ("erm", "oneshot"):
        # 6 epochs: an estimate still falling is read at the 6th epoch at the latest (noise.last_read_epoch)
        outcome, _ = run(dataclasses.replace(CONFIG, method=method, epochs=6))
        assert 0.0 <= outcome.noise.overall <= 1.0 and outcome.noise.per_class.shape == (CLASSES,)
        assert outcome.suggested.shape == (N,) and ((outcome.suggested >= -1) & (outcome.suggested < CLASSES)).all()


@pytest.fixture
def planted_confusion(monkeypatch):
    """The confusion estimate replaced by one that always finds class 1's labels moved there from class 0, beyond
    its noise rate by 0.3; returns what its reading was called with, and the reading."""
    import labelscrub.task as task_module
    from labelscrub.confusion import ConfusionEstimate, ConfusionReading, source_scores

    seen = {}

    def fake_read(log_probs, labels, usable, num_classes, *, epoch):
        source = np.array([-1, 0, -1, -1])
        seen["log_probs"], seen["epoch"] = log_probs, epoch
        seen.setdefault("epochs", []).append(epoch)
        seen["reading"] = ConfusionReading(np.array([0.0, 0.9, 0.0, 0.0]), source,
                                           source_scores(log_probs, labels, usable, source), epoch)
        return seen["reading"]

    def fake_beyond(reading, spread):
        return ConfusionEstimate(np.array([0.0, spread[1] + 0.3, 0.0, 0.0]), reading.source, reading.epoch)

    monkeypatch.setattr(task_module, "read_confusion", fake_read)
    monkeypatch.setattr(task_module, "confusion_beyond", fake_beyond)
    return seen


def test_auto_reads_the_confusion_window_and_leaves_the_confused_samples_out_from_then_on(planted_confusion):
    from labelscrub.confusion import confused_samples

    seen = planted_confusion
    for loss_pass in ("train", "probe"):
        seen.clear()
        outcome, ids = run(dataclasses.replace(CONFIG, rho_max="auto", epochs=16, warmup=1, loss_pass=loss_pass))
        # 16 epochs: the window is epochs 6-8 (ending at 55%), after the noise estimate however long that waits
        # (the 6th epoch at the latest), so the estimate comes after epoch 8.
        assert seen["epoch"] == 8 and outcome.confusion.epoch == 8 and outcome.confusion.source[1] == 0
        assert seen["log_probs"].shape == (N, CLASSES) and (seen["log_probs"] <= 0).all()
        labels = np.arange(N) % CLASSES
        confused = confused_samples(seen["reading"], labels, np.ones(N, bool), ids, outcome.confusion,
                                    outcome.noise.per_class)
        # Class 1's share beyond its decoy estimate, the samples scoring most like class 0, are left out of every
        # later epoch and of the manifest.
        assert confused.sum() == drop_count(0.3, 10) and (labels[confused] == 1).all()
        assert not outcome.kept_history[9:][:, confused].any() and not outcome.final_kept[confused].any()
        np.testing.assert_array_equal(outcome.confused, confused)


def test_in_a_longer_run_the_confusion_is_read_before_the_count_and_again_with_it(planted_confusion, tmp_path):
    from labelscrub import checkpoint

    _, labels, ids = tiny_data()
    fingerprint = checkpoint.fingerprint(data="tiny", config={}, sample_ids=ids, labels=labels)
    auto = dataclasses.replace(CONFIG, rho_max="auto", epochs=24, warmup=1)

    def save_between_the_windows(payload):
        if payload["epoch"] in (8, 11):
            (tmp_path / str(payload["epoch"])).mkdir()
            checkpoint.save(tmp_path / str(payload["epoch"]), payload)

    outcome, ids = run(auto, on_checkpoint=save_between_the_windows, fingerprint=fingerprint)
    # 24 epochs: the confusion estimate reads epochs 7-9 (ending at 40%), then with the count epochs 11-13 (55%)
    assert planted_confusion["epochs"] == [9, 13] and outcome.mistakes.epoch == outcome.confusion.epoch == 13
    assert outcome.confusion.source[1] == 0 and outcome.confused.sum() == drop_count(0.3, 10)
    # nothing dropped until the count; the confused samples left out from then on
    assert outcome.kept_history[:14].all() and not outcome.kept_history[14:][:, outcome.confused].any()
    saved = checkpoint.load(tmp_path / "11", fingerprint)
    assert checkpoint.method_state(saved)["confusion_read_epoch"] == 9
    planted_confusion.clear()
    resumed, _ = run(auto, resume=saved, fingerprint=fingerprint)
    assert planted_confusion["epochs"] == [13]  # the early reading came back from the checkpoint
    np.testing.assert_array_equal(resumed.confused, outcome.confused)
    # a checkpoint without the early reading (an earlier version read once) reads once, with the count
    saved["state"] = {key: value for key, value in saved["state"].items() if not key.startswith("confusion_read")}
    planted_confusion.clear()
    once, _ = run(auto, resume=saved, fingerprint=fingerprint)
    assert planted_confusion["epochs"] == [13] and once.confusion.source[1] == 0 and once.confused.any()
    # ...and one saved inside the first window without its sum so far
    inside = checkpoint.load(tmp_path / "8", fingerprint)
    assert "confusion_log_probs" in inside["state"]
    inside["state"] = {key: value for key, value in inside["state"].items() if key != "confusion_log_probs"}
    planted_confusion.clear()
    once, _ = run(auto, resume=inside, fingerprint=fingerprint)
    assert planted_confusion["epochs"] == [13] and once.confusion.source[1] == 0


def test_auto_waits_for_its_plausible_mistakes_then_drops_each_class_its_rate_and_confusion_only_beyond(
        planted_confusion, monkeypatch):
    import labelscrub.mistakes as mistakes_module
    import labelscrub.task as task_module
    from labelscrub.mistakes import MistakeEstimate
    from labelscrub.noise import overall_rate

    mistakes = np.array([0.5, np.nan, 0.2, 0.0])  # class 1 not read: its decoy estimate stands
    monkeypatch.setattr(task_module, "doubt_estimate", lambda estimate, **_: estimate)  # 10 per class: trusted
    # the decoys find nothing wrong at random here; test_mistakes.py tests that guard for clean-looking data
    monkeypatch.setattr(mistakes_module, "MIN_RANDOM_SHARE", 0.0)
    monkeypatch.setattr(task_module, "count_mistakes",
                        lambda *_, epoch: MistakeEstimate(mistakes, epoch))
    outcome, _ = run(dataclasses.replace(CONFIG, rho_max="auto", select="per-class", epochs=16, warmup=1))
    rates = np.where(np.isnan(mistakes), outcome.noise.per_class, np.fmax(outcome.noise.per_class, mistakes))
    assert outcome.mistakes.epoch == outcome.confusion.epoch == 8
    assert outcome.rho_max == pytest.approx(overall_rate(rates, np.full(CLASSES, 10)))
    # the confusion counts beyond the raised rates: the fake finds class 1's share at its rate + 0.3
    assert outcome.confusion.share[1] == pytest.approx(rates[1] + 0.3)
    labels = np.arange(N) % CLASSES
    ranked_out = ~outcome.final_kept & ~outcome.confused
    for label in range(CLASSES):
        assert ranked_out[labels == label].sum() == drop_count(rates[label], 10)
    # nothing was dropped before the count, which must see a network trained on every sample
    assert outcome.kept_history[:9].all() and [summary.rho for summary in outcome.epochs[:9]] == [0.0] * 9


@pytest.mark.parametrize("method, waits", [("truncation", True), ("oneshot", False)])
def test_truncation_waits_for_the_count_too_while_oneshot_drops_by_its_ranking_as_before(method, waits, monkeypatch):
    import labelscrub.task as task_module
    from labelscrub.noise import NoiseEstimate

    monkeypatch.setattr(task_module, "read_estimate",  # a trusted decoy estimate of 25%
                        lambda *arguments, epoch, **options: (NoiseEstimate(0.25, np.full(CLASSES, 0.25), epoch), 0.0))
    monkeypatch.setattr(task_module, "doubt_estimate", lambda estimate, **_: estimate)
    outcome = method_run(method, rho_max="auto", epochs=16, warmup=6)
    if waits:
        assert outcome.mistakes.epoch == 8  # read in the window, epochs 6-8
        assert [summary.dropped for summary in outcome.epochs[:9]] == [0] * 9
        assert all(summary.dropped > 0 for summary in outcome.epochs[9:])
    else:  # ranked once after its 6 warm-up epochs by the decoy estimate; its fresh model trains on the rest
        assert (~outcome.kept_history[6:]).sum(axis=1).tolist() == [10] * 16


@pytest.fixture
def few_classes_read(monkeypatch):
    """Every class's probabilities never fit: the confusion estimate reads `TOP_CLASSES` per sample."""
    from labelscrub import confusion

    monkeypatch.setattr(confusion, "MAX_CELLS", N * CLASSES - 1)
    return lambda count: monkeypatch.setattr(confusion, "TOP_CLASSES", count)


def test_beyond_the_memory_bound_auto_reads_a_few_classes_per_sample_and_leaves_out_the_same_samples(
        planted_confusion, few_classes_read):
    from labelscrub.confusion import TopLogProbs

    auto = dataclasses.replace(CONFIG, rho_max="auto", epochs=16, warmup=1)
    with mock.patch("labelscrub.task.fits_in_memory", return_value=True):
        every, _ = run(auto)
    every_seen = dict(planted_confusion)
    progress = NotingProgress()
    few, _ = run(auto, progress=progress)
    # with 4 classes the 3 read per sample are all but the label: the same scores as every class's
    read = planted_confusion["log_probs"]
    assert isinstance(read, TopLogProbs) and read.top.shape == (N, 3) and read.measured().all()
    assert every_seen["log_probs"].shape == (N, CLASSES) and planted_confusion["epoch"] == every_seen["epoch"] == 8
    np.testing.assert_array_equal(few.confused, every.confused)
    assert few.confused.sum() == drop_count(0.3, 10)
    assert any("reads each sample's 3 most likely other classes, not all 4" in note for note in progress.notes)


def test_a_run_resumed_inside_the_window_reads_the_same_few_classes(planted_confusion, few_classes_read, tmp_path):
    from labelscrub import checkpoint

    few_classes_read(1)
    _, labels, ids = tiny_data()
    fingerprint = checkpoint.fingerprint(data="tiny", config={}, sample_ids=ids, labels=labels)
    auto = dataclasses.replace(CONFIG, rho_max="auto", epochs=16, warmup=1)

    def save_inside_the_window(payload):  # epochs 6-8; saved at once, as the model's tensors change after
        if payload["epoch"] == 7:
            checkpoint.save(tmp_path, payload)

    complete, _ = run(auto, on_checkpoint=save_inside_the_window, fingerprint=fingerprint)
    read = planted_confusion["log_probs"]
    saved = checkpoint.load(tmp_path, fingerprint)
    state = checkpoint.method_state(saved)
    assert state["confusion_top_classes"].shape == (N, 1) and state["confusion_top_classes"].dtype == np.int32
    with mock.patch("labelscrub.methods.train_epoch", wraps=train_epoch) as training:
        resumed, _ = run(auto, resume=saved, fingerprint=fingerprint)
    asked = training.call_args_list[0].kwargs["top"]  # epoch 8 (index 8), the window's last
    assert training.call_args_list[0].args[2] == 8 and asked.count == 1
    np.testing.assert_array_equal(asked.classes, state["confusion_top_classes"])  # those of the window's first epoch
    for name in ("classes", "top", "label", "rest"):  # what the estimate read, with no sample dropped from it
        np.testing.assert_array_equal(getattr(planted_confusion["log_probs"], name), getattr(read, name))
    assert read.measured().all()
    np.testing.assert_array_equal(resumed.confused, complete.confused)
    np.testing.assert_array_equal(resumed.loss_history, complete.loss_history)
    assert resumed.confusion.source.tolist() == complete.confusion.source.tolist() == [-1, 0, -1, -1]


def test_erm_estimates_the_confusion_but_drops_and_reports_no_confused_sample(planted_confusion):
    outcome, _ = run(dataclasses.replace(CONFIG, method="erm", rho_max="auto", epochs=16, warmup=1))
    assert outcome.confusion.source[1] == 0 and outcome.final_kept.all() and not outcome.confused.any()


@pytest.mark.e2e
def test_auto_finds_no_confusion_between_classes_the_network_cannot_tell_apart():
    """Quadrants in the same row look alike to ResNet-18 at 8 px: more than half of each pair scores like the
    other, which is the network's own confusion, not moved labels."""
    outcome, _ = run(dataclasses.replace(CONFIG, rho_max="auto", epochs=12, warmup=1), network=None)
    assert outcome.confusion is not None and (outcome.confusion.source == -1).all()
